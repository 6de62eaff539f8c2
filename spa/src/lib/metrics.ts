// Reading GET /_/api/metrics: the current value of each series, by name and labels.
// Units come from Prometheus-style suffixes (_bytes, _percent, _ms, _seconds, _total).

import { formatBytes, formatCount, formatDuration, formatPercent } from './format';
import type { AttentionItem, MetricSnapshot } from './types';

/** The request target of slum's own API and dashboard traffic. */
export const OWN_TARGET = 'slum';

/** The value of the snapshot `name` whose labels include all of `labels`; null when absent. */
export function snapshotValue(
	snaps: readonly MetricSnapshot[],
	name: string,
	labels: Record<string, string> = {}
): number | null {
	for (const s of snaps) {
		if (s.name !== name) continue;
		if (Object.entries(labels).every(([k, v]) => s.labels?.[k] === v)) {
			return typeof s.value === 'number' && Number.isFinite(s.value) ? s.value : null;
		}
	}
	return null;
}

/** label value -> value of every snapshot named `name` (e.g. requests_per_s by target). */
export function valuesByLabel(
	snaps: readonly MetricSnapshot[],
	name: string,
	label: string
): Record<string, number> {
	const out: Record<string, number> = {};
	for (const s of snaps) {
		const key = s.labels?.[label];
		if (s.name === name && key !== undefined && typeof s.value === 'number') out[key] = s.value;
	}
	return out;
}

export interface Latency {
	target: string;
	p50: number;
	p95: number;
	p99: number;
	count: number;
}

/** Recent (~2 min) latency per target, from the latency_recent_ms snapshots that saw requests. */
export function recentLatencies(snaps: readonly MetricSnapshot[]): Latency[] {
	const out: Latency[] = [];
	for (const s of snaps) {
		if (s.name !== 'latency_recent_ms') continue;
		const target = s.labels?.target;
		const p99 = s.p99 ?? s.value;
		if (!target || typeof p99 !== 'number' || !Number.isFinite(p99)) continue;
		if (s.count === 0) continue;
		out.push({ target, p50: s.p50 ?? 0, p95: s.p95 ?? 0, p99, count: s.count ?? 0 });
	}
	return out;
}

/** The slowest target by p99, leaving out slum's own API (the dashboard's polling). */
export function worstLatency(snaps: readonly MetricSnapshot[]): Latency | null {
	const all = recentLatencies(snaps);
	let worst: Latency | null = null;
	for (const l of all) {
		if (l.target !== OWN_TARGET && (!worst || l.p99 > worst.p99)) worst = l;
	}
	return worst;
}

export interface HostStats {
	load1: number | null;
	load5: number | null;
	cpus: number | null;
	memoryTotal: number | null;
	memoryAvailable: number | null;
	diskFree: number | null;
	diskTotal: number | null;
}

export function hostStats(snaps: readonly MetricSnapshot[]): HostStats {
	const v = (name: string) => snapshotValue(snaps, `host_${name}`);
	return {
		load1: v('load1'),
		load5: v('load5'),
		cpus: v('cpus'),
		memoryTotal: v('memory_total_bytes'),
		memoryAvailable: v('memory_available_bytes'),
		diskFree: v('disk_free_bytes'),
		diskTotal: v('disk_total_bytes')
	};
}

/** Fraction used (0..1) of a total, or null when either side is unknown. */
export function usedFraction(free: number | null, total: number | null): number | null {
	if (free === null || total === null || total <= 0) return null;
	return Math.min(Math.max(1 - free / total, 0), 1);
}

export const DISK_WARN_FRACTION = 0.9;

/** "disk filling up" for the overview's attention list, or null while there is room. */
export function diskAttention(host: HostStats): AttentionItem | null {
	const used = usedFraction(host.diskFree, host.diskTotal);
	if (used === null || used < DISK_WARN_FRACTION) return null;
	return {
		kind: 'disk',
		id: 'data disk',
		message: `${Math.round(used * 100)}% used, ${formatBytes(host.diskFree)} free`
	};
}

export function formatMetricValue(name: string, value: number): string {
	if (name.endsWith('_bytes')) return formatBytes(value);
	if (name.endsWith('_percent') || name.endsWith('_pct')) return formatPercent(value);
	if (name.endsWith('_ms')) return formatMs(value);
	if (name.endsWith('_per_s')) return formatRate(value);
	if (name.endsWith('_seconds') || name.endsWith('_secs')) return formatDuration(value);
	if (Number.isInteger(value) || Math.abs(value) >= 100) return formatCount(value);
	return value.toFixed(2);
}

/** 0.4 -> "0.4 ms", 12.3 -> "12 ms", 2500 -> "2.5 s". */
export function formatMs(value: number | null | undefined): string {
	if (value === null || value === undefined || !Number.isFinite(value)) return '—';
	if (value >= 1000) return `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s`;
	return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

/** Requests per second: "0", "0.25/s", "3.4/s", "120/s". */
export function formatRate(value: number | null | undefined): string {
	if (value === null || value === undefined || !Number.isFinite(value)) return '—';
	if (value === 0) return '0/s';
	if (value < 0.1) return `${value.toFixed(2)}/s`;
	if (value < 10) return `${value.toFixed(1)}/s`;
	return `${formatCount(value)}/s`;
}
