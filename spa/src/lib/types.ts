// Shapes of the /_/api JSON documents (see the HTTP API in the project's contract).

export const INSTANCE_STATES = [
	'stopped',
	'sleeping',
	'starting',
	'healthy',
	'degraded',
	'unhealthy',
	'backoff',
	'stopping',
	'failed',
	'crash-looping'
] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

export type Health = 'healthy' | 'unhealthy' | 'unknown';

export interface Instance {
	id: string; // "service:name"
	service: string;
	name: string;
	status: InstanceState;
	health: Health;
	port: number | null;
	pid: number | null;
	uptime_secs: number;
	restarts: number;
	reason: string | null;
	wakes: number;
	cpu_percent: number | null;
	rss_bytes: number | null;
	socket: string | null;
	url: string | null;
	last_exit: number | null;
	/** The last known exit code, kept across restarts (last_exit is reset at each start). */
	last_exit_code?: number | null;
	/** The last reason given for a state change, kept across restarts. */
	last_reason?: string | null;
	/** The state machine's own state when `status` is derived (crash-looping). */
	state?: string;
	crash_looping?: boolean;
	idle_timeout: number | null;
	/** Share of `{service}.{domain}` traffic, 0-100 (absent from older servers). */
	weight?: number;
	/** Processes the kernel killed at the instance's memory limit. */
	oom_kills?: number;
	storage_bytes?: number | null;
	storage_quota_bytes?: number | null;
	storage_warning?: string | null;
	/** With ?all=1: the server that runs it. */
	server?: string;
}

/** One state change of an instance (`ts` in unix seconds). */
export interface StateTransition {
	ts: number;
	state: InstanceState | string;
	reason: string | null;
}

/** What the instance runs: its [service.NAME] section, as parsed. */
export interface ServiceConfig {
	command: string[];
	health: string | null;
	idle_timeout: number | null;
	startup_timeout: number | null;
	restart: string | null;
	workdir: string | null;
	env: Record<string, string>;
	memory_limit_mb?: number | null;
	cpu_shares?: number | null;
	pids_max?: number | null;
	isolation?: string;
}

/** GET /_/api/instances/{id}: the instance plus its recent state history and config. */
export interface InstanceDetail extends Instance {
	history: StateTransition[];
	config: ServiceConfig;
}

/** SSE `state` event of /_/api/logs/stream?states=1. */
export interface StateEvent {
	id: string;
	old: string;
	new: string;
	reason: string | null;
}

export interface SpawnRequest {
	service: string;
	id: string;
}

export type ServerStatus = 'online' | 'offline' | 'invalid';

export interface Server {
	id: string;
	name: string;
	address: string;
	tenant_count: number;
	created_at: string;
	status: ServerStatus;
	capacity: number | null;
	has_token?: boolean;
	/** why its status is `invalid`: the stored address does not parse */
	reason?: string;
}

export interface NewServer {
	address: string;
	name?: string;
	token?: string;
	capacity?: number;
}

export type TenantStatus = 'active' | 'suspended';

export interface Tenant {
	id: string;
	server_id: string;
	server: string | null;
	service: string | null;
	config: string | null;
	status: TenantStatus;
	created_at: string;
}

/** GET /_/api/tenants/{id}: with its domain aliases and the local instance, if any. */
export interface TenantDetail extends Tenant {
	aliases?: string[];
	instance?: Instance | null;
}

/** GET /_/api/fleet/tenants: a tenant as its node sees it. */
export interface TenantState {
	id: string;
	server_id: string;
	server: string | null;
	/** its server's status in the registry; a tenant is only as up as its server */
	server_status: string;
	/** null: not running, or its node did not say (then `error` says why) */
	instance: Instance | null;
	error: string | null;
}

export interface NewTenant {
	id: string;
	server?: string;
	service?: string;
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogStream = 'stdout' | 'stderr' | 'system';

export interface LogEntry {
	id: number;
	timestamp: string; // ISO-8601
	level: LogLevel;
	instance_id: string | null;
	tenant_id: string | null;
	stream: LogStream;
	message: string;
}

/** GET /_/api/fleet/logs: a line of any node, saying which. */
export interface FleetLogEntry extends LogEntry {
	server: string;
}

export interface LogQuery {
	instance_id?: string;
	tenant_id?: string;
	/** Exactly this level. */
	level?: LogLevel | '';
	/** This level and above (what the level filter means). */
	min_level?: LogLevel | '';
	search?: string;
	since?: string;
	until?: string;
	limit?: number;
	offset?: number;
	/** Cursor: entries older than this id (newest first). */
	before_id?: number;
	/** Entries newer than this id, oldest first. */
	after_id?: number;
}

export interface AttentionItem {
	kind: 'instance' | 'server' | 'disk';
	id: string;
	/** the instance's state, the server's status, "filling" (absent when the SPA makes one) */
	state?: string;
	message: string;
}

export interface Overview {
	servers: number;
	tenants: number;
	instances: number;
	healthy: number;
	unhealthy: number;
	by_state: Partial<Record<InstanceState, number>> & Record<string, number>;
	recent_logs: LogEntry[];
	attention: AttentionItem[];
	server_list?: (Server & { tenants: string[] })[];
	levels?: string[];
}

/**
 * One current value from GET /_/api/metrics. Histogram-like metrics
 * (http_request_duration_ms, latency_recent_ms) carry their summary fields as well.
 */
export interface MetricSnapshot {
	name: string;
	value: number | null;
	labels: Record<string, string>;
	timestamp: number; // ms since the epoch
	count?: number;
	sum?: number;
	mean?: number;
	p50?: number;
	p95?: number;
	p99?: number;
	max?: number;
}

/** Per-second values, oldest first; null where there was no sample. */
export interface LiveSeries {
	requests?: (number | null)[];
	errors?: (number | null)[];
	cpu_percent?: (number | null)[];
	rss_bytes?: (number | null)[];
}

/** GET /_/api/metrics/live?seconds=N: the last N seconds from memory. */
export interface LiveMetrics {
	/** ms since the epoch of the last value of every series. */
	end: number;
	step_ms: number;
	/** Keyed by request target (instance id, 'slum', ...) or sampled instance id. */
	series: Record<string, LiveSeries>;
}

/** [ms since the epoch, avg, min, max] of one step. */
export type HistoryPoint = [number, number, number, number];

export interface HistorySeries {
	labels: Record<string, string>;
	points: HistoryPoint[];
}

/** GET /_/api/metrics/history: per-minute rows, averaged into `step` seconds. */
export interface MetricHistory {
	name: string;
	step: number;
	since: number;
	until: number;
	series: HistorySeries[];
	/** The points of the only series, else []. */
	points: HistoryPoint[];
}

export interface MetricHistoryQuery {
	name: string;
	labels?: Record<string, string>;
	/** ms since the epoch, or '24h'-style, or ISO-8601. */
	since?: number | string;
	until?: number | string;
	step?: number;
}

/** One instance in the overview's top CPU / memory lists. */
export interface Consumer {
	id: string;
	cpu_percent: number | null;
	rss_bytes: number | null;
}

/** GET /_/api/overview/summary: the overview page in one answer, aggregated by the server. */
export interface OverviewSummary extends Overview {
	traffic: {
		end: number;
		bucket_s: number;
		/** Mean requests per second of each bucket over the last hour, oldest first. */
		requests: number[];
		errors: number[];
		requests_total: number;
		errors_total: number;
		rate_now: number;
	};
	/** The slowest application over the last ~2 minutes; `instance` set when it has a page. */
	latency: {
		target: string;
		instance: string | null;
		p50: number;
		p95: number;
		p99: number;
		count: number;
	} | null;
	host: Partial<
		Record<
			| 'load1'
			| 'load5'
			| 'cpus'
			| 'memory_total_bytes'
			| 'memory_available_bytes'
			| 'disk_free_bytes'
			| 'disk_total_bytes',
			number
		>
	>;
	top_cpu: Consumer[];
	top_memory: Consumer[];
}

/** GET /_/api/fleet/servers: a server with what it says about itself. */
export interface ServerView extends Server {
	version?: string | null;
	instance_count?: number | null;
	host?: { load1?: number; cpus?: number; memory_total_bytes?: number; memory_available_bytes?: number };
	/** unix seconds of its last answer */
	last_seen?: number | null;
	/** why it did not answer this time */
	error?: string;
}
