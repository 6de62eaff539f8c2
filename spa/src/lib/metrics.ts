// Making sense of metric snapshots without knowing every metric name in advance:
// units come from Prometheus-style suffixes (_bytes, _percent, _ms, _seconds, _total).

import { formatBytes, formatCount, formatDuration, formatPercent } from './format';
import type { MetricSnapshot } from './types';

export interface MetricSummary {
	name: string;
	/** Sum over all label sets (what a counter or gauge adds up to across instances). */
	total: number;
	labelSets: number;
	timestamp: number;
}

export function summarizeMetrics(snapshots: readonly MetricSnapshot[]): MetricSummary[] {
	const byName = new Map<string, MetricSummary>();
	for (const s of snapshots) {
		if (!Number.isFinite(s.value)) continue;
		const cur = byName.get(s.name);
		if (cur) {
			cur.total += s.value;
			cur.labelSets++;
			cur.timestamp = Math.max(cur.timestamp, s.timestamp ?? 0);
		} else {
			byName.set(s.name, {
				name: s.name,
				total: s.value,
				labelSets: 1,
				timestamp: s.timestamp ?? 0
			});
		}
	}
	return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** The snapshots that describe one instance (any label whose value is its id). */
export function metricsForInstance(
	snapshots: readonly MetricSnapshot[],
	instanceId: string
): MetricSnapshot[] {
	return snapshots.filter((s) => Object.values(s.labels ?? {}).includes(instanceId));
}

export function isCounter(name: string): boolean {
	return name.endsWith('_total') || name.endsWith('_count');
}

export function formatMetricValue(name: string, value: number): string {
	if (name.endsWith('_bytes')) return formatBytes(value);
	if (name.endsWith('_percent') || name.endsWith('_pct')) return formatPercent(value);
	if (name.endsWith('_ms')) return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
	if (name.endsWith('_seconds') || name.endsWith('_secs')) return formatDuration(value);
	if (Number.isInteger(value) || Math.abs(value) >= 100) return formatCount(value);
	return value.toFixed(2);
}

/** "http_requests_total" -> "Http requests total" */
export function metricTitle(name: string): string {
	const words = name.replace(/^slum_/, '').split('_').filter(Boolean);
	const text = words.join(' ');
	return text ? text[0]!.toUpperCase() + text.slice(1) : name;
}
