// Geometry for the small SVG sparklines, and the shapes the uPlot charts are fed.

import type { HistoryPoint } from './types';

/** An SVG path through `values`, scaled into width x height with `pad` pixels of margin. */
export function sparklinePath(
	values: readonly (number | null)[],
	width: number,
	height: number,
	pad = 1
): string {
	const pts = values.filter((v): v is number => v !== null && Number.isFinite(v));
	if (pts.length === 0 || width <= 0 || height <= 0) return '';
	const min = Math.min(0, ...pts);
	const max = Math.max(...pts);
	const innerH = Math.max(height - 2 * pad, 0);
	const innerW = Math.max(width - 2 * pad, 0);
	const y = (v: number) =>
		max === min ? pad + innerH : pad + innerH - ((v - min) / (max - min)) * innerH;
	const round = (n: number) => Math.round(n * 100) / 100;
	if (pts.length === 1) {
		const yy = round(y(pts[0]!));
		return `M${round(pad)},${yy}L${round(pad + innerW)},${yy}`;
	}
	const step = innerW / (pts.length - 1);
	return pts
		.map((v, i) => `${i === 0 ? 'M' : 'L'}${round(pad + i * step)},${round(y(v))}`)
		.join('');
}

export interface ChartSeries {
	label: string;
	values: (number | null)[];
	color: string;
	/** A thin, dashed line: a secondary series such as the peak. */
	faint?: boolean;
}

/** x values (ms since the epoch) and one or more y series of the same length. */
export interface ChartData {
	xs: number[];
	series: ChartSeries[];
}

export const EMPTY_CHART: ChartData = { xs: [], series: [] };

/** How many x values have a value in some series. */
export function chartPoints(data: ChartData): number {
	let n = 0;
	for (let i = 0; i < data.xs.length; i++) {
		if (data.series.some((s) => s.values[i] !== null && s.values[i] !== undefined)) n++;
	}
	return n;
}

/**
 * History points [ts, avg, min, max] as a chart: the average, and the peak as a faint line.
 * Steps without a row become gaps (null), so a stopped instance does not draw a straight line
 * across the time it was down.
 */
export function historyChart(
	points: readonly HistoryPoint[],
	options: {
		label: string;
		color: string;
		peak?: string | false;
		since: number;
		until: number;
		stepMs: number;
	}
): ChartData {
	const { since, until, stepMs } = options;
	const byTime = new Map(points.map((p) => [p[0], p]));
	const xs: number[] = [];
	const avg: (number | null)[] = [];
	const max: (number | null)[] = [];
	if (stepMs > 0 && until > since) {
		const first = Math.floor(since / stepMs) * stepMs;
		for (let t = first; t <= until; t += stepMs) {
			const p = byTime.get(t);
			xs.push(t);
			avg.push(p ? p[1] : null);
			max.push(p ? p[3] : null);
		}
	}
	const series: ChartSeries[] = [{ label: options.label, values: avg, color: options.color }];
	if (options.peak) series.push({ label: options.peak, values: max, color: options.color, faint: true });
	return { xs, series };
}

const pad2 = (n: number) => String(n).padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const DAY_MS = 86400_000;

function sameDay(a: Date, b: Date): boolean {
	return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

type TickFormat = (d: Date, prev: Date | null) => string;
const dayOf = (d: Date) => `${MONTHS[d.getMonth()]} ${d.getDate()}`;
const hm = (d: Date) => `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
const hms = (d: Date) => `${hm(d)}:${pad2(d.getSeconds())}`;
// where a tick starts a new day, the day is named (its midnight reads as the day alone)
const withDay =
	(time: (d: Date) => string): TickFormat =>
	(d, prev) => {
		if (prev === null || sameDay(d, prev)) return time(d);
		return d.getHours() === 0 && d.getMinutes() === 0 && d.getSeconds() === 0 ? dayOf(d) : `${dayOf(d)} ${time(d)}`;
	};
const dayHm: TickFormat = (d) => `${dayOf(d)} ${hm(d)}`;
const dayHms: TickFormat = (d) => `${dayOf(d)} ${hms(d)}`;

/**
 * Labels for the ticks of a time axis, in local time, as precise as their spacing needs and no
 * more: seconds when ticks are under a minute apart, the day alone when they are a day apart,
 * the day in front where a tick starts a new day. No two ticks read the same: where a format
 * would repeat a label (ticks 30 s apart as "14:05", or "12:00" on two days), a finer one is used.
 */
export function timeTickLabels(ticksMs: readonly number[], stepMs: number): string[] {
	const ladder: TickFormat[] =
		stepMs >= DAY_MS
			? [dayOf, dayHm]
			: stepMs >= 60_000
				? [withDay(hm), dayHm, dayHms]
				: [withDay(hms), dayHms];
	let labels: string[] = [];
	for (const fmt of ladder) {
		let prev: Date | null = null;
		labels = ticksMs.map((t) => {
			const d = new Date(t);
			const label = fmt(d, prev);
			prev = d;
			return label;
		});
		if (new Set(labels).size === labels.length) break;
	}
	return labels;
}

/** The time span that every chart of a group is drawn over: from the earliest to the latest x. */
export function sharedRange(charts: readonly ChartData[]): [number, number] | null {
	let lo = Infinity;
	let hi = -Infinity;
	for (const c of charts) {
		if (!c.xs.length) continue;
		lo = Math.min(lo, c.xs[0]!);
		hi = Math.max(hi, c.xs[c.xs.length - 1]!);
	}
	return lo < hi ? [lo, hi] : null;
}

/** A zoom from a dragged selection (either direction); a click or a drag of a few pixels
 * (under `minSpanMs`) is not a zoom. */
export function zoomFromSelection(aMs: number, bMs: number, minSpanMs = 2000): [number, number] | null {
	const lo = Math.min(aMs, bMs);
	const hi = Math.max(aMs, bMs);
	return Number.isFinite(lo) && Number.isFinite(hi) && hi - lo >= minSpanMs ? [lo, hi] : null;
}

/** The part of a chart from `fromMs` on. */
export function chartFrom(data: ChartData, fromMs: number | null): ChartData {
	if (fromMs === null) return data;
	const i = data.xs.findIndex((x) => x >= fromMs);
	if (i <= 0) return i === 0 ? data : { xs: [], series: data.series.map((s) => ({ ...s, values: [] })) };
	return { xs: data.xs.slice(i), series: data.series.map((s) => ({ ...s, values: s.values.slice(i) })) };
}
