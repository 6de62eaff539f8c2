// Filtering and sorting of the instance table, kept pure for tests.

import { stateSeverity } from './status';
import type { Instance, InstanceState } from './types';

export type SortKey =
	| 'id'
	| 'status'
	| 'health'
	| 'port'
	| 'uptime'
	| 'restarts'
	| 'cpu'
	| 'memory'
	| 'rps';
export type SortDir = 'asc' | 'desc';

export interface InstanceFilter {
	text?: string;
	state?: InstanceState | 'running' | 'problem' | '';
	service?: string;
}

const PROBLEM_STATES = new Set(['failed', 'crash-looping', 'unhealthy', 'backoff', 'degraded']);
const RUNNING_STATES = new Set(['healthy', 'starting', 'degraded', 'unhealthy', 'stopping']);

export function filterInstances(list: readonly Instance[], filter: InstanceFilter): Instance[] {
	const words = (filter.text ?? '').toLowerCase().split(/\s+/).filter(Boolean);
	return list.filter((inst) => {
		if (filter.service && inst.service !== filter.service) return false;
		if (filter.state === 'running') {
			if (!RUNNING_STATES.has(inst.status)) return false;
		} else if (filter.state === 'problem') {
			if (!PROBLEM_STATES.has(inst.status)) return false;
		} else if (filter.state && inst.status !== filter.state) {
			return false;
		}
		if (words.length) {
			const hay = [inst.id, inst.status, inst.port ?? '', inst.reason ?? '', inst.url ?? '']
				.join(' ')
				.toLowerCase();
			return words.every((w) => hay.includes(w));
		}
		return true;
	});
}

/** Requests per second by instance id (from the requests_per_s metric). */
export type Rates = Record<string, number>;

function sortValue(inst: Instance, key: SortKey, rates: Rates): number | string | null {
	switch (key) {
		case 'id':
			return inst.id;
		case 'status':
			return stateSeverity(inst.status);
		case 'health':
			return inst.health === 'unhealthy' ? 0 : inst.health === 'unknown' ? 1 : 2;
		case 'port':
			return inst.port;
		case 'uptime':
			return inst.uptime_secs;
		case 'restarts':
			return inst.restarts;
		case 'cpu':
			return inst.cpu_percent;
		case 'memory':
			return inst.rss_bytes;
		case 'rps':
			return rates[inst.id] ?? null;
	}
}

/** Stable sort; missing values go last in either direction; ties fall back to the id. */
export function sortInstances(
	list: readonly Instance[],
	key: SortKey,
	dir: SortDir,
	rates: Rates = {}
): Instance[] {
	const sign = dir === 'asc' ? 1 : -1;
	return [...list].sort((a, b) => {
		const va = sortValue(a, key, rates);
		const vb = sortValue(b, key, rates);
		if (va === null && vb !== null) return 1;
		if (vb === null && va !== null) return -1;
		if (va !== null && vb !== null && va !== vb) {
			const cmp =
				typeof va === 'string' && typeof vb === 'string'
					? va.localeCompare(vb)
					: (va as number) - (vb as number);
			if (cmp !== 0) return sign * cmp;
		}
		return a.id.localeCompare(b.id);
	});
}

/** Counts per state, e.g. for the filter chips. */
export function countByState(list: readonly Instance[]): Record<string, number> {
	const out: Record<string, number> = {};
	for (const inst of list) out[inst.status] = (out[inst.status] ?? 0) + 1;
	return out;
}

export function servicesOf(list: readonly Instance[]): string[] {
	return [...new Set(list.map((i) => i.service))].sort();
}

/** An instance with a state change applied (from a `state` event), before the next poll. */
export function applyStateChange(
	list: readonly Instance[],
	change: { id: string; new: string; reason: string | null }
): Instance[] | null {
	const i = list.findIndex((x) => x.id === change.id);
	if (i < 0) return null;
	const next = list.slice();
	next[i] = { ...list[i]!, status: change.new as Instance['status'], reason: change.reason };
	return next;
}
