// Shapes of the /_/api JSON documents (see the HTTP API in the project's contract).

export const INSTANCE_STATES = [
	'stopped',
	'starting',
	'healthy',
	'degraded',
	'unhealthy',
	'backoff',
	'stopping',
	'failed'
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
}

export interface SpawnRequest {
	service: string;
	id: string;
}

export type ServerStatus = 'online' | 'offline';

export interface Server {
	id: string;
	name: string;
	address: string;
	tenant_count: number;
	created_at: string;
	status: ServerStatus;
	capacity: number | null;
}

export interface NewServer {
	address: string;
	name?: string;
	token?: string;
}

export type TenantStatus = 'active' | 'suspended';

export interface Tenant {
	id: string;
	server_id: string;
	server: string;
	service: string;
	config: string | null;
	status: TenantStatus;
	created_at: string;
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

export interface LogQuery {
	instance_id?: string;
	tenant_id?: string;
	level?: LogLevel | '';
	search?: string;
	since?: string;
	until?: string;
	limit?: number;
	offset?: number;
}

export interface AttentionItem {
	kind: 'instance' | 'server' | 'disk';
	id: string;
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
}

export interface MetricSnapshot {
	name: string;
	value: number;
	labels: Record<string, string>;
	timestamp: number; // ms since the epoch
}

export type MetricPoint = [number, number]; // [ms since the epoch, value]

export interface MetricHistory {
	name: string;
	points: MetricPoint[];
}

export interface MetricHistoryQuery {
	name: string;
	labels?: Record<string, string>;
	since?: number;
	until?: number;
	step?: number;
}
