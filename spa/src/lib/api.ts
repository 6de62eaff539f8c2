// A typed client for slum's dashboard API (/_/api) and the fleet API (/api).
// Pure: no SvelteKit imports, so it runs under vitest with a fake fetch.

import type {
	FleetLogEntry,
	OverviewSummary,
	ServerView,
	Instance,
	InstanceDetail,
	LiveMetrics,
	LogEntry,
	LogQuery,
	MetricHistory,
	MetricHistoryQuery,
	MetricSnapshot,
	NewServer,
	NewTenant,
	Overview,
	Server,
	SpawnRequest,
	Tenant,
	TenantDetail,
	TenantState
} from './types';

export const API_BASE = '/_/api';
// The brief routes fleet mutations (add/remove server or tenant) through the fleet API.
export const FLEET_BASE = '/api';

/** Any non-2xx answer. `status` is 0 when the server could not be reached at all. */
export class ApiError extends Error {
	readonly status: number;
	readonly body: unknown;

	constructor(status: number, message: string, body: unknown = null) {
		super(message);
		this.name = 'ApiError';
		this.status = status;
		this.body = body;
	}

	get isNotFound(): boolean {
		return this.status === 404;
	}
}

/** 401: no session, or it expired. */
export class UnauthorizedError extends ApiError {
	constructor(message = 'Not logged in', body: unknown = null) {
		super(401, message, body);
		this.name = 'UnauthorizedError';
	}
}

/** The request never got an HTTP answer (server down, network gone). */
export class NetworkError extends ApiError {
	constructor(message = 'Cannot reach the slum server') {
		super(0, message);
		this.name = 'NetworkError';
	}
}

export function errorMessage(err: unknown): string {
	if (err instanceof Error) return err.message;
	return String(err);
}

type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface ClientOptions {
	fetch?: FetchLike;
	base?: string;
	fleetBase?: string;
	/** Called once per 401, before the UnauthorizedError is thrown. */
	onUnauthorized?: (err: UnauthorizedError) => void;
	/** Called after each request: false when slum could not be reached (or its edge said 502/503/504). */
	onReachable?: (reachable: boolean) => void;
}

type Query = Record<string, string | number | boolean | null | undefined>;

export interface StreamOptions {
	/** Resume after this log id (the server replays newer lines from its store first). */
	afterId?: number | null;
	/** Also send `state` events: instance state changes. */
	states?: boolean;
	/** false: no `log` events wanted (only states); the server may still send some. */
	logs?: boolean;
}

/** Builds `?a=1&b=x` from the defined, non-empty values; '' when none. */
export function queryString(params: Query | object | undefined): string {
	if (!params) return '';
	const qs = new URLSearchParams();
	for (const [key, value] of Object.entries(params as Query)) {
		if (value === undefined || value === null || value === '') continue;
		qs.set(key, String(value));
	}
	const s = qs.toString();
	return s ? `?${s}` : '';
}

/** `k=v,k2=v2`, keys sorted: the form slum uses to name a label set. */
export function encodeLabels(labels: Record<string, string>): string {
	return Object.keys(labels)
		.sort()
		.map((k) => `${k}=${labels[k]}`)
		.join(',');
}

async function readBody(res: Response): Promise<unknown> {
	const text = await res.text();
	if (!text) return null;
	try {
		return JSON.parse(text) as unknown;
	} catch {
		return text;
	}
}

function messageFrom(body: unknown, res: Response): string {
	if (body && typeof body === 'object' && 'error' in body) {
		const e = (body as { error: unknown }).error;
		if (typeof e === 'string' && e) return e;
	}
	if (typeof body === 'string' && body.trim() && body.length < 300) return body.trim();
	return `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
}

export function createClient(options: ClientOptions = {}) {
	const base = options.base ?? API_BASE;
	const fleetBase = options.fleetBase ?? FLEET_BASE;

	async function request<T>(
		url: string,
		init: { method?: string; body?: unknown; signal?: AbortSignal } = {}
	): Promise<T> {
		const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
		const headers: Record<string, string> = { Accept: 'application/json' };
		const reqInit: RequestInit = {
			method: init.method ?? 'GET',
			credentials: 'same-origin',
			headers,
			signal: init.signal
		};
		if (init.body !== undefined) {
			headers['Content-Type'] = 'application/json';
			reqInit.body = JSON.stringify(init.body);
		}
		let res: Response;
		try {
			res = await doFetch(url, reqInit);
		} catch (err) {
			if (err instanceof DOMException && err.name === 'AbortError') throw err;
			options.onReachable?.(false);
			throw new NetworkError();
		}
		// a proxy in front (Caddy, nginx) answers for slum while it is down
		options.onReachable?.(!(res.status === 502 || res.status === 503 || res.status === 504));
		const body = await readBody(res);
		if (res.status === 401) {
			const err = new UnauthorizedError(messageFrom(body, res), body);
			options.onUnauthorized?.(err);
			throw err;
		}
		if (!res.ok) throw new ApiError(res.status, messageFrom(body, res), body);
		return body as T;
	}

	const enc = encodeURIComponent;

	return {
		request,

		// session
		login: (token: string) =>
			request<{ ok: boolean }>(`${base}/login`, { method: 'POST', body: { token } }),
		logout: () => request<unknown>(`${base}/logout`, { method: 'POST' }),
		session: () => request<{ authenticated: boolean }>(`${base}/session`),

		// overview
		overview: () => request<Overview>(`${base}/overview`),

		// instances
		instances: () => request<Instance[]>(`${base}/instances`),
		instance: (id: string) => request<InstanceDetail>(`${base}/instances/${enc(id)}`),
		spawn: (req: SpawnRequest) =>
			request<Instance>(`${base}/instances`, { method: 'POST', body: req }),
		restart: (id: string) =>
			request<Instance>(`${base}/instances/${enc(id)}/restart`, { method: 'POST' }),
		stop: (id: string) =>
			request<Instance>(`${base}/instances/${enc(id)}/stop`, { method: 'POST' }),
		setWeight: (id: string, weight: number) =>
			request<Instance>(`${base}/instances/${enc(id)}/weight`, {
				method: 'POST',
				body: { weight }
			}),

		// fleet
		servers: () => request<Server[]>(`${base}/servers`),
		/** Servers with load, memory, instance count, version and last answer (asks each node). */
		fleetServers: () => request<ServerView[]>(`${base}/fleet/servers`),
		/** Instances of every node (`slum ps --all`); a node that does not answer gives one row. */
		allInstances: () => request<Instance[]>(`${base}/instances?all=1`),
		/** The newest lines of every node, merged by time; each says which server it is from. */
		fleetLogs: (q: { search?: string; min_level?: string; limit?: number } = {}) =>
			request<FleetLogEntry[]>(`${base}/fleet/logs${queryString(q)}`),
		server: (id: string) => request<Server>(`${base}/servers/${enc(id)}`),
		addServer: (s: NewServer) =>
			request<Server>(`${fleetBase}/servers`, { method: 'POST', body: s }),
		removeServer: (id: string) =>
			request<unknown>(`${fleetBase}/servers/${enc(id)}`, { method: 'DELETE' }),
		tenants: () => request<Tenant[]>(`${base}/tenants`),
		tenant: (id: string) => request<TenantDetail>(`${base}/tenants/${enc(id)}`),
		addTenant: (t: NewTenant) =>
			request<Tenant>(`${fleetBase}/tenants`, { method: 'POST', body: t }),
		removeTenant: (id: string) =>
			request<unknown>(`${fleetBase}/tenants/${enc(id)}`, { method: 'DELETE' }),
		/** Start it on server `to` (a name), stop it here; its data stays on the old server. */
		moveTenant: (id: string, to: string) =>
			request<Tenant>(`${fleetBase}/tenants/${enc(id)}/move`, { method: 'POST', body: { to } }),
		/** Route `domain` to the tenant too (409: another tenant has it). */
		addAlias: (id: string, domain: string) =>
			request<TenantDetail>(`${base}/tenants/${enc(id)}/aliases`, { method: 'POST', body: { domain } }),
		removeAlias: (id: string, domain: string) =>
			request<TenantDetail>(`${base}/tenants/${enc(id)}/aliases/${enc(domain)}`, { method: 'DELETE' }),
		/** Each tenant (or one) with its server's status and its instance, wherever it runs. */
		tenantStates: (id?: string) =>
			request<TenantState[]>(`${base}/fleet/tenants${queryString({ id })}`),

		// logs
		logs: (q: LogQuery = {}, signal?: AbortSignal) =>
			request<LogEntry[]>(`${base}/logs${queryString(q)}`, { signal }),
		logStreamUrl: (q: LogQuery = {}, opts: StreamOptions = {}) => {
			// the stream only carries new lines: paging and time bounds do not apply
			const {
				limit: _l,
				offset: _o,
				until: _u,
				since: _s,
				before_id: _b,
				after_id: _a,
				...live
			} = q;
			const extra: Query = {};
			// resume after a line we hold: the server replays what came after it from the store
			if (opts.afterId !== undefined && opts.afterId !== null && opts.afterId > 0) {
				extra.after_id = opts.afterId;
			}
			if (opts.states) extra.states = 1;
			if (opts.logs === false) extra.logs = 0;
			return `${base}/logs/stream${queryString({ ...live, ...extra })}`;
		},

		// metrics
		metrics: () => request<MetricSnapshot[]>(`${base}/metrics`),
		/** The last `seconds` (10..3600) at one-second resolution, from memory. */
		metricsLive: (seconds: number, signal?: AbortSignal, keys?: readonly string[]) =>
			request<LiveMetrics>(
				`${base}/metrics/live${queryString({
					seconds: Math.min(Math.max(Math.round(seconds), 10), 3600),
					// only these series (an instance page wants its own, not the fleet's)
					keys: keys && keys.length ? keys.join(',') : undefined
				})}`,
				{ signal }
			),
		/** Everything the overview shows, aggregated by the server in one small answer. */
		overviewSummary: () => request<OverviewSummary>(`${base}/overview/summary`),
		config: () => request<Record<string, unknown>>(`${base}/config`),
		metricHistory: (q: MetricHistoryQuery, signal?: AbortSignal) => {
			const params = {
				name: q.name,
				labels: q.labels && Object.keys(q.labels).length ? encodeLabels(q.labels) : undefined,
				since: q.since,
				until: q.until,
				step: q.step
			};
			return request<MetricHistory>(`${base}/metrics/history${queryString(params)}`, { signal });
		}
	};
}

export type Client = ReturnType<typeof createClient>;
