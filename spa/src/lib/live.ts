// The last hour at one-second resolution, kept in the browser: one full fetch of
// /_/api/metrics/live?seconds=3600, then small fetches of the last few seconds merged in.

import type { LiveMetrics, LiveSeries } from './types';

export type LiveMetric = keyof LiveSeries;
export const LIVE_METRICS: readonly LiveMetric[] = ['requests', 'errors', 'cpu_percent', 'rss_bytes'];

/** Seconds the server keeps per series (its one-second rings). */
export const SERVER_RING = 3600;

export class LiveWindow {
	readonly seconds: number;
	/** ms since the epoch of the newest slot; null before the first answer. */
	end: number | null = null;
	step = 1000;
	#series = new Map<string, Map<LiveMetric, (number | null)[]>>();

	constructor(seconds = 3600) {
		if (!Number.isInteger(seconds) || seconds < 1) throw new RangeError('seconds must be >= 1');
		this.seconds = seconds;
	}

	/**
	 * How many seconds to ask for next: everything at first, then what is new (plus overlap).
	 * Never the server's whole ring (3600): its oldest slot can hold the second in progress.
	 */
	wanted(now: number = Date.now()): number {
		const most = Math.min(this.seconds, SERVER_RING - 1);
		if (this.end === null) return most;
		const behind = Math.ceil((now - this.end) / this.step) + 5;
		return Math.min(Math.max(behind, 10), most);
	}

	/** Merge an answer: the window moves to its end; its values replace what overlaps. */
	apply(live: LiveMetrics): void {
		const step = live.step_ms || 1000;
		if (this.end === null || step !== this.step || live.end - this.end >= this.seconds * step) {
			this.#series.clear();
			this.step = step;
			this.end = live.end;
		} else if (live.end > this.end) {
			const shift = Math.round((live.end - this.end) / step);
			for (const metrics of this.#series.values()) {
				for (const [m, values] of metrics) {
					metrics.set(m, values.slice(shift).concat(new Array<null>(shift).fill(null)));
				}
			}
			this.end = live.end;
		}
		// where the answer's last value lands in our window
		const lastSlot = this.seconds - 1 - Math.round((this.end - live.end) / step);
		for (const [key, entry] of Object.entries(live.series ?? {})) {
			let metrics = this.#series.get(key);
			if (!metrics) this.#series.set(key, (metrics = new Map()));
			for (const m of LIVE_METRICS) {
				const incoming = entry[m];
				if (!incoming) continue;
				let values = metrics.get(m);
				if (!values) metrics.set(m, (values = new Array<number | null>(this.seconds).fill(null)));
				for (let i = 0; i < incoming.length; i++) {
					const slot = lastSlot - (incoming.length - 1 - i);
					if (slot >= 0 && slot < this.seconds) values[slot] = incoming[i] ?? null;
				}
			}
		}
	}

	keys(): string[] {
		return [...this.#series.keys()].sort();
	}

	/** The values of one series, oldest first (all null when unknown). */
	values(key: string, metric: LiveMetric): (number | null)[] {
		return this.#series.get(key)?.get(metric)?.slice() ?? new Array<null>(this.seconds).fill(null);
	}

	/** Per-slot sum over the keys `include` accepts; null where none of them has a value. */
	sum(metric: LiveMetric, include: (key: string) => boolean = () => true): (number | null)[] {
		const out = new Array<number | null>(this.seconds).fill(null);
		for (const [key, metrics] of this.#series) {
			if (!include(key)) continue;
			const values = metrics.get(metric);
			if (!values) continue;
			for (let i = 0; i < values.length; i++) {
				const v = values[i];
				if (v !== null && v !== undefined) out[i] = (out[i] ?? 0) + v;
			}
		}
		return out;
	}

	/** ms timestamps of the slots, oldest first. */
	times(): number[] {
		const end = this.end ?? 0;
		return Array.from({ length: this.seconds }, (_, i) => end - (this.seconds - 1 - i) * this.step);
	}
}

/** Mean of the non-null values in each run of `size` (the last run may be shorter). */
export function bucketMean(values: readonly (number | null)[], size: number): (number | null)[] {
	const out: (number | null)[] = [];
	const n = Math.max(1, Math.floor(size));
	// align buckets to the end, so the newest bucket is always complete
	const start = values.length % n;
	if (start) out.push(mean(values.slice(0, start)));
	for (let i = start; i < values.length; i += n) out.push(mean(values.slice(i, i + n)));
	return out;
}

/** The same bucketing for timestamps: each bucket is labelled by its last slot. */
export function bucketTimes(times: readonly number[], size: number): number[] {
	const out: number[] = [];
	const n = Math.max(1, Math.floor(size));
	const start = times.length % n;
	if (start) out.push(times[start - 1]!);
	for (let i = start; i < times.length; i += n) out.push(times[Math.min(i + n, times.length) - 1]!);
	return out;
}

function mean(values: readonly (number | null)[]): number | null {
	let sum = 0;
	let n = 0;
	for (const v of values) {
		if (v === null || v === undefined || !Number.isFinite(v)) continue;
		sum += v;
		n++;
	}
	return n ? sum / n : null;
}

/** Sum of the non-null values of the last `seconds` slots. */
export function sumLast(values: readonly (number | null)[], seconds = values.length): number {
	let total = 0;
	for (const v of values.slice(Math.max(values.length - seconds, 0))) total += v ?? 0;
	return total;
}

/** Sum of the non-null values, or null when all are null. */
export function total(values: readonly (number | null)[]): number | null {
	let sum = 0;
	let any = false;
	for (const v of values) {
		if (v === null || v === undefined) continue;
		sum += v;
		any = true;
	}
	return any ? sum : null;
}

/** The last non-null value. */
export function latest(values: readonly (number | null)[]): number | null {
	for (let i = values.length - 1; i >= 0; i--) {
		const v = values[i];
		if (v !== null && v !== undefined) return v;
	}
	return null;
}

/**
 * Where a live chart should start: at the first second any of `series` has a value (an
 * instance started ten minutes ago gets ten minutes, not an hour of empty axis), but showing
 * at least `minSeconds`.
 */
export function liveStart(series: readonly (readonly (number | null)[])[], minSeconds = 300): number {
	const length = series[0]?.length ?? 0;
	let first = length;
	for (const values of series) {
		const i = values.findIndex((v) => v !== null && v !== undefined);
		if (i >= 0 && i < first) first = i;
	}
	return Math.max(Math.min(first, length - minSeconds), 0);
}

/** Seconds per chart point for a span: about 150 to 360 points, never finer than 2 s. */
export function bucketSeconds(spanSeconds: number): number {
	if (spanSeconds <= 600) return 2;
	if (spanSeconds <= 1800) return 5;
	return 10;
}
