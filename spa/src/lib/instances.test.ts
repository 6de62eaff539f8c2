import { describe, expect, it } from 'vitest';
import { applyStateChange, countByState, filterInstances, servicesOf, sortInstances } from './instances';
import { stateLook, healthLook } from './status';
import type { Instance } from './types';

function inst(id: string, over: Partial<Instance> = {}): Instance {
	const [service = '', name = ''] = id.split(':');
	return {
		id,
		service,
		name,
		status: 'healthy',
		health: 'healthy',
		port: null,
		pid: null,
		uptime_secs: 0,
		restarts: 0,
		reason: null,
		wakes: 0,
		cpu_percent: null,
		rss_bytes: null,
		socket: null,
		url: null,
		last_exit: null,
		idle_timeout: null,
		...over
	};
}

const list = [
	inst('notes:alice', { port: 4001, uptime_secs: 50, cpu_percent: 2, rss_bytes: 300 }),
	inst('notes:bob', { status: 'failed', health: 'unhealthy', restarts: 4, reason: 'exit code 1' }),
	inst('api:main', { status: 'stopped', health: 'unknown', port: null }),
	inst('notes:carol', { status: 'degraded', port: 4002, uptime_secs: 500, cpu_percent: 9, rss_bytes: 100 })
];
const ids = (l: Instance[]) => l.map((i) => i.id);

describe('filterInstances', () => {
	it('matches every word against id, state, port and reason', () => {
		expect(ids(filterInstances(list, { text: 'notes' }))).toEqual(['notes:alice', 'notes:bob', 'notes:carol']);
		expect(ids(filterInstances(list, { text: 'NOTES exit' }))).toEqual(['notes:bob']);
		expect(ids(filterInstances(list, { text: '4002' }))).toEqual(['notes:carol']);
	});

	it('filters by state, running and problem groups, and service', () => {
		expect(ids(filterInstances(list, { state: 'stopped' }))).toEqual(['api:main']);
		expect(ids(filterInstances(list, { state: 'running' }))).toEqual(['notes:alice', 'notes:carol']);
		expect(ids(filterInstances(list, { state: 'problem' }))).toEqual(['notes:bob', 'notes:carol']);
		expect(ids(filterInstances(list, { service: 'api' }))).toEqual(['api:main']);
		expect(filterInstances(list, {})).toHaveLength(4);
	});
});

describe('sortInstances', () => {
	it('sorts by id', () => {
		expect(ids(sortInstances(list, 'id', 'asc'))).toEqual(['api:main', 'notes:alice', 'notes:bob', 'notes:carol']);
		expect(ids(sortInstances(list, 'id', 'desc'))).toEqual(['notes:carol', 'notes:bob', 'notes:alice', 'api:main']);
	});

	it('sorts states worst first', () => {
		expect(ids(sortInstances(list, 'status', 'asc'))).toEqual(['notes:bob', 'notes:carol', 'notes:alice', 'api:main']);
	});

	it('puts missing numbers last in both directions', () => {
		expect(ids(sortInstances(list, 'cpu', 'desc'))).toEqual(['notes:carol', 'notes:alice', 'api:main', 'notes:bob']);
		expect(ids(sortInstances(list, 'cpu', 'asc'))).toEqual(['notes:alice', 'notes:carol', 'api:main', 'notes:bob']);
		expect(ids(sortInstances(list, 'port', 'asc')).slice(0, 2)).toEqual(['notes:alice', 'notes:carol']);
	});

	it('sorts by request rate from the metrics, instances without traffic last', () => {
		const rates = { 'notes:bob': 0.5, 'api:main': 12 };
		expect(ids(sortInstances(list, 'rps', 'desc', rates)).slice(0, 2)).toEqual(['api:main', 'notes:bob']);
	});

	it('applies a live state change to a copy', () => {
		const next = applyStateChange(list, { id: 'notes:alice', new: 'stopping', reason: 'stop asked' });
		expect(next?.find((i) => i.id === 'notes:alice')).toMatchObject({ status: 'stopping', reason: 'stop asked' });
		expect(list[0]!.status).toBe('healthy');
		expect(applyStateChange(list, { id: 'x:y', new: 'stopped', reason: null })).toBeNull();
	});

	it('does not modify its input', () => {
		const copy = [...list];
		sortInstances(list, 'memory', 'asc');
		expect(list).toEqual(copy);
	});
});

describe('counts and looks', () => {
	it('counts per state and lists services', () => {
		expect(countByState(list)).toEqual({ healthy: 1, failed: 1, stopped: 1, degraded: 1 });
		expect(servicesOf(list)).toEqual(['api', 'notes']);
	});

	it('gives every state a label and an icon, not just a colour', () => {
		for (const s of ['stopped', 'starting', 'healthy', 'degraded', 'unhealthy', 'backoff', 'stopping', 'failed']) {
			const look = stateLook(s);
			expect(look.label).toMatch(/^[A-Z]/);
			expect(look.icon).toBeTruthy();
		}
		expect(stateLook('weird').label).toBe('weird');
		expect(stateLook('').label).toBe('Unknown');
		expect(stateLook('healthy').running).toBe(true);
		expect(stateLook('failed').running).toBe(false);
		expect(healthLook('unhealthy').label).toBe('Failing');
		expect(healthLook('whatever').label).toBe('Unknown');
	});
});
