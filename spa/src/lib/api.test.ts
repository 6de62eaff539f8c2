import { describe, expect, it, vi } from 'vitest';
import {
	ApiError,
	createClient,
	encodeLabels,
	NetworkError,
	queryString,
	UnauthorizedError
} from './api';

interface Call {
	url: string;
	init: RequestInit;
}

function fakeFetch(respond: (call: Call) => Response | Promise<Response>) {
	const calls: Call[] = [];
	const fetch = vi.fn(async (url: string, init: RequestInit = {}) => {
		const call = { url, init };
		calls.push(call);
		return respond(call);
	});
	return { fetch, calls };
}

const json = (status: number, body: unknown) =>
	new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

describe('queryString', () => {
	it('skips empty values and encodes the rest', () => {
		expect(queryString({ a: 'x y', b: '', c: undefined, d: null, e: 0, f: 'a:b' })).toBe(
			'?a=x+y&e=0&f=a%3Ab'
		);
		expect(queryString({})).toBe('');
		expect(queryString(undefined)).toBe('');
	});

	it('encodes label sets sorted by key', () => {
		expect(encodeLabels({ z: '1', instance: 'notes:alice' })).toBe('instance=notes:alice,z=1');
	});
});

describe('createClient', () => {
	it('adds and removes a domain alias, the domain escaped in the path, and reads the 409', async () => {
		const { fetch, calls } = fakeFetch((c) =>
			c.init.method === 'POST' && String(c.init.body).includes('taken.example')
				? json(409, { error: "domain 'taken.example' belongs to tenant 'rival'" })
				: json(c.init.method === 'POST' ? 201 : 200, { id: 'acme', aliases: [] })
		);
		const api = createClient({ fetch });
		await api.addAlias('acme', 'shop.example.com');
		expect(calls[0]!.url).toBe('/_/api/tenants/acme/aliases');
		expect(calls[0]!.init.method).toBe('POST');
		expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ domain: 'shop.example.com' });
		await api.removeAlias('acme', 'a/b.example');
		expect(calls[1]!.url).toBe('/_/api/tenants/acme/aliases/a%2Fb.example');
		expect(calls[1]!.init.method).toBe('DELETE');
		const refused = await api.addAlias('acme', 'taken.example').catch((e: unknown) => e);
		expect(refused).toBeInstanceOf(ApiError);
		expect((refused as ApiError).status).toBe(409);
		expect((refused as ApiError).message).toContain('rival');
	});

	it('asks where tenants stand, all or one', async () => {
		const { fetch, calls } = fakeFetch(() => json(200, []));
		const api = createClient({ fetch });
		await api.tenantStates();
		await api.tenantStates('bob');
		expect(calls.map((c) => c.url)).toEqual(['/_/api/fleet/tenants', '/_/api/fleet/tenants?id=bob']);
	});

	it('GETs JSON with the session cookie', async () => {
		const { fetch, calls } = fakeFetch(() => json(200, [{ id: 'notes:alice' }]));
		const api = createClient({ fetch });
		await expect(api.instances()).resolves.toEqual([{ id: 'notes:alice' }]);
		expect(calls[0]!.url).toBe('/_/api/instances');
		expect(calls[0]!.init.method).toBe('GET');
		expect(calls[0]!.init.credentials).toBe('same-origin');
		expect(calls[0]!.init.body).toBeUndefined();
	});

	it('POSTs JSON bodies', async () => {
		const { fetch, calls } = fakeFetch(() => json(201, { id: 'notes:bob' }));
		const api = createClient({ fetch });
		await api.spawn({ service: 'notes', id: 'bob' });
		expect(calls[0]!.url).toBe('/_/api/instances');
		expect(calls[0]!.init.method).toBe('POST');
		expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ service: 'notes', id: 'bob' });
		expect((calls[0]!.init.headers as Record<string, string>)['Content-Type']).toBe(
			'application/json'
		);
	});

	it('encodes instance ids in paths', async () => {
		const { fetch, calls } = fakeFetch(() => json(200, {}));
		const api = createClient({ fetch });
		await api.restart('notes:alice');
		await api.stop('notes:alice');
		await api.instance('a/b');
		expect(calls.map((c) => c.url)).toEqual([
			'/_/api/instances/notes%3Aalice/restart',
			'/_/api/instances/notes%3Aalice/stop',
			'/_/api/instances/a%2Fb'
		]);
	});

	it('sends fleet changes to the fleet API', async () => {
		const { fetch, calls } = fakeFetch(() => json(200, {}));
		const api = createClient({ fetch });
		await api.addServer({ address: 'http://10.0.0.2:8080', name: 'eu-1' });
		await api.removeTenant('acme');
		expect(calls.map((c) => `${c.init.method} ${c.url}`)).toEqual([
			'POST /api/servers',
			'DELETE /api/tenants/acme'
		]);
	});

	it('moves a tenant by server name, and shows why a move was refused', async () => {
		const { fetch, calls } = fakeFetch(() =>
			json(409, { error: "server 'eu-2' is offline: choose another or wait" })
		);
		const api = createClient({ fetch });
		const err = await api.moveTenant('a/cme', 'eu-2').catch((e: unknown) => e);
		expect(calls[0]!.url).toBe('/api/tenants/a%2Fcme/move');
		expect(calls[0]!.init.method).toBe('POST');
		expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ to: 'eu-2' });
		expect(err).toBeInstanceOf(ApiError);
		expect((err as ApiError).status).toBe(409);
		expect((err as ApiError).message).toBe("server 'eu-2' is offline: choose another or wait");
	});

	it('turns {"error"} answers into ApiError with the status', async () => {
		const { fetch } = fakeFetch(() => json(409, { error: 'notes:alice already exists' }));
		const api = createClient({ fetch });
		const err = await api.spawn({ service: 'notes', id: 'alice' }).catch((e: unknown) => e);
		expect(err).toBeInstanceOf(ApiError);
		expect(err).not.toBeInstanceOf(UnauthorizedError);
		expect((err as ApiError).status).toBe(409);
		expect((err as ApiError).message).toBe('notes:alice already exists');
	});

	it('describes errors without a JSON body', async () => {
		const { fetch } = fakeFetch(() => new Response('', { status: 502, statusText: 'Bad Gateway' }));
		const err = await createClient({ fetch }).overview().catch((e: unknown) => e);
		expect((err as ApiError).message).toBe('HTTP 502 Bad Gateway');
		const { fetch: f2 } = fakeFetch(() => new Response('upstream down', { status: 502 }));
		const err2 = await createClient({ fetch: f2 }).overview().catch((e: unknown) => e);
		expect((err2 as ApiError).message).toBe('upstream down');
	});

	it('reports 401 to the handler and throws UnauthorizedError', async () => {
		const { fetch } = fakeFetch(() => json(401, { error: 'invalid token' }));
		const onUnauthorized = vi.fn();
		const api = createClient({ fetch, onUnauthorized });
		const err = await api.overview().catch((e: unknown) => e);
		expect(err).toBeInstanceOf(UnauthorizedError);
		expect((err as UnauthorizedError).status).toBe(401);
		expect(onUnauthorized).toHaveBeenCalledTimes(1);
	});

	it('logs in by posting the token once', async () => {
		const { fetch, calls } = fakeFetch(() => json(200, { ok: true }));
		await createClient({ fetch }).login('slum_abc');
		expect(calls[0]!.url).toBe('/_/api/login');
		expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ token: 'slum_abc' });
		expect(calls[0]!.url).not.toContain('slum_abc');
	});

	it('throws NetworkError when the server cannot be reached', async () => {
		const fetch = vi.fn(async () => {
			throw new TypeError('Failed to fetch');
		});
		const err = await createClient({ fetch }).servers().catch((e: unknown) => e);
		expect(err).toBeInstanceOf(NetworkError);
		expect((err as NetworkError).status).toBe(0);
	});

	it('builds log queries and the stream URL', async () => {
		const { fetch, calls } = fakeFetch(() => json(200, []));
		const api = createClient({ fetch });
		await api.logs({ instance_id: 'notes:alice', search: 'boom*', level: '', limit: 200 });
		expect(calls[0]!.url).toBe('/_/api/logs?instance_id=notes%3Aalice&search=boom*&limit=200');
		expect(
			api.logStreamUrl({ tenant_id: 'acme', level: 'warn', limit: 5, offset: 2, since: 'x', until: 'y' })
		).toBe('/_/api/logs/stream?tenant_id=acme&level=warn');
		expect(api.logStreamUrl()).toBe('/_/api/logs/stream');
	});

	it('resumes the stream after a log id and asks for state events', () => {
		const api = createClient({ fetch: fakeFetch(() => json(200, [])).fetch });
		expect(api.logStreamUrl({ min_level: 'warn', before_id: 9 }, { afterId: 42, states: true })).toBe(
			'/_/api/logs/stream?min_level=warn&after_id=42&states=1'
		);
		// id 0 would replay the whole store: never sent
		expect(api.logStreamUrl({}, { afterId: 0 })).toBe('/_/api/logs/stream');
		expect(api.logStreamUrl({}, { states: true, logs: false })).toBe(
			'/_/api/logs/stream?states=1&logs=0'
		);
	});

	it('asks for metric history with k=v labels and live metrics within bounds', async () => {
		const { fetch, calls } = fakeFetch(() =>
			json(200, { name: 'cpu_percent', step: 60, since: 1, until: 2, series: [], points: [] })
		);
		const api = createClient({ fetch });
		const h = await api.metricHistory({
			name: 'cpu_percent',
			labels: { instance: 'notes:alice' },
			since: '24h'
		});
		expect(h.step).toBe(60);
		expect(calls[0]!.url).toBe(
			'/_/api/metrics/history?name=cpu_percent&labels=instance%3Dnotes%3Aalice&since=24h'
		);
		await api.metricsLive(7200);
		await api.metricsLive(1);
		expect(calls[1]!.url).toBe('/_/api/metrics/live?seconds=3600');
		expect(calls[2]!.url).toBe('/_/api/metrics/live?seconds=10');
		const { fetch: f500 } = fakeFetch(() => json(500, { error: 'x' }));
		await expect(createClient({ fetch: f500 }).metricHistory({ name: 'a' })).rejects.toBeInstanceOf(
			ApiError
		);
	});
});
