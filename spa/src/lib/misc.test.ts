import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { chartFrom, chartPoints, historyChart, sparklinePath } from './chart';
import { bucketMean, bucketSeconds, bucketTimes, latest, liveStart, LiveWindow, sumLast, total } from './live';
import {
	diskAttention,
	formatMetricValue,
	formatMs,
	formatRate,
	hostStats,
	snapshotValue,
	usedFraction,
	valuesByLabel,
	worstLatency
} from './metrics';
import { startPolling } from './poll';
import type { LiveMetrics, MetricSnapshot } from './types';

describe('sparklinePath', () => {
	it('scales values into the box from zero, top is the maximum', () => {
		expect(sparklinePath([0, 10], 100, 20, 0)).toBe('M0,20L100,0');
		expect(sparklinePath([0, 5, 10], 10, 10, 1)).toBe('M1,9L5,5L9,1');
		expect(sparklinePath([5, 10], 10, 10, 0)).toBe('M0,5L10,0');
	});
	it('draws nothing-happening at the bottom and skips missing values', () => {
		expect(sparklinePath([0, 0, 0], 10, 10, 0)).toBe('M0,10L5,10L10,10');
		expect(sparklinePath([7], 10, 10, 0)).toBe('M0,0L10,0');
		expect(sparklinePath([1, null, Number.NaN, 2], 10, 10, 0)).toBe('M0,5L10,0');
		expect(sparklinePath([], 10, 10)).toBe('');
	});
});

describe('historyChart', () => {
	it('lays history points on a regular grid, gaps as null, with the peak as a faint line', () => {
		const data = historyChart(
			[
				[60_000, 1, 0.5, 2],
				[180_000, 3, 2, 4]
			],
			{ label: 'CPU', color: '#fff', peak: 'peak', since: 60_000, until: 200_000, stepMs: 60_000 }
		);
		expect(data.xs).toEqual([60_000, 120_000, 180_000]);
		expect(data.series[0]!.values).toEqual([1, null, 3]);
		expect(data.series[1]).toMatchObject({ label: 'peak', values: [2, null, 4], faint: true });
		expect(chartPoints(data)).toBe(2);
		expect(chartFrom(data, 100_000).xs).toEqual([120_000, 180_000]);
		expect(chartFrom(data, 100_000).series[1]!.values).toEqual([null, 4]);
		expect(chartFrom(data, null)).toBe(data);
		expect(chartFrom(data, 0)).toBe(data);
		expect(chartFrom(data, 999_000).xs).toEqual([]);
		expect(historyChart([], { label: 'x', color: '#fff', since: 0, until: 0, stepMs: 60 }).xs).toEqual([]);
	});
});

describe('LiveWindow', () => {
	const answer = (end: number, series: LiveMetrics['series']): LiveMetrics => ({ end, step_ms: 1000, series });

	it('takes a full answer, then merges the newest seconds in', () => {
		const w = new LiveWindow(5);
		expect(w.wanted()).toBe(5);
		w.apply(answer(10_000, { 'web:one': { requests: [1, 2, 3, 4, 5], cpu_percent: [null, 1, 1, 1, 1] } }));
		expect(w.values('web:one', 'requests')).toEqual([1, 2, 3, 4, 5]);
		expect(w.times()).toEqual([6000, 7000, 8000, 9000, 10_000]);
		// two seconds later, an answer of three seconds overlapping by one
		w.apply(answer(12_000, { 'web:one': { requests: [9, 6, 7] }, 'web:two': { requests: [1, 1, 1] } }));
		expect(w.end).toBe(12_000);
		expect(w.values('web:one', 'requests')).toEqual([3, 4, 9, 6, 7]);
		expect(w.values('web:one', 'cpu_percent')).toEqual([1, 1, 1, null, null]);
		expect(w.values('web:two', 'requests')).toEqual([null, null, 1, 1, 1]);
		expect(w.sum('requests')).toEqual([3, 4, 10, 7, 8]);
		expect(w.sum('requests', (k) => k !== 'web:two')).toEqual([3, 4, 9, 6, 7]);
		expect(w.keys()).toEqual(['web:one', 'web:two']);
		expect(w.wanted(12_000)).toBe(5);
		// an hour-long window asks for one second less than the server's ring holds
		expect(new LiveWindow(3600).wanted()).toBe(3599);
	});

	it('starts over after a long gap', () => {
		const w = new LiveWindow(3);
		w.apply(answer(1000, { a: { requests: [1, 1, 1] } }));
		w.apply(answer(100_000, { b: { requests: [2] } }));
		expect(w.keys()).toEqual(['b']);
		expect(w.values('b', 'requests')).toEqual([null, null, 2]);
		expect(w.values('a', 'requests')).toEqual([null, null, null]);
	});

	it('starts a live chart where the data starts, showing a minimum span', () => {
		const empty = new Array<number | null>(3600).fill(null);
		const late = empty.slice();
		late[3500] = 1;
		expect(liveStart([empty, late], 300)).toBe(3300);
		late[100] = 1;
		expect(liveStart([empty, late], 300)).toBe(100);
		expect(liveStart([empty], 300)).toBe(3300);
		expect(liveStart([[1, 2]], 300)).toBe(0);
		expect(bucketSeconds(300)).toBe(2);
		expect(bucketSeconds(1200)).toBe(5);
		expect(bucketSeconds(3600)).toBe(10);
	});

	it('buckets, sums and finds the latest value', () => {
		expect(bucketMean([1, 3, null, 5, 7, null, null], 2)).toEqual([1, 3, 6, null]);
		expect(bucketTimes([1, 2, 3, 4, 5, 6, 7], 2)).toEqual([1, 3, 5, 7]);
		expect(sumLast([1, null, 2, 3], 2)).toBe(5);
		expect(total([null, null])).toBeNull();
		expect(total([1, null, 2])).toBe(3);
		expect(latest([1, 2, null])).toBe(2);
		expect(latest([])).toBeNull();
	});
});

describe('metrics', () => {
	const snaps: MetricSnapshot[] = [
		{ name: 'requests_per_s', value: 2.5, labels: { target: 'web:one' }, timestamp: 1 },
		{ name: 'requests_per_s', value: 9, labels: { target: 'slum' }, timestamp: 1 },
		{ name: 'latency_recent_ms', value: 40, labels: { target: 'web:one' }, timestamp: 1, count: 3, p50: 2, p95: 30, p99: 40 },
		{ name: 'latency_recent_ms', value: 90, labels: { target: 'slum' }, timestamp: 1, count: 9, p50: 2, p95: 30, p99: 90 },
		{ name: 'http_request_duration_ms', value: null, labels: { target: 'web:one' }, timestamp: 1, p99: 5 },
		{ name: 'host_disk_free_bytes', value: 5 * 1024 ** 3, labels: {}, timestamp: 1 },
		{ name: 'host_disk_total_bytes', value: 100 * 1024 ** 3, labels: {}, timestamp: 1 },
		{ name: 'host_load1', value: 0.5, labels: {}, timestamp: 1 }
	];
	it('reads values by name and labels', () => {
		expect(snapshotValue(snaps, 'requests_per_s', { target: 'slum' })).toBe(9);
		expect(snapshotValue(snaps, 'http_request_duration_ms')).toBeNull();
		expect(snapshotValue(snaps, 'missing')).toBeNull();
		expect(valuesByLabel(snaps, 'requests_per_s', 'target')).toEqual({ 'web:one': 2.5, slum: 9 });
	});
	it('finds the slowest application, leaving the dashboard API out', () => {
		expect(worstLatency(snaps)).toMatchObject({ target: 'web:one', p99: 40 });
		expect(worstLatency(snaps.filter((s) => s.labels.target !== 'web:one'))).toBeNull();
	});
	it('says when the disk is filling up', () => {
		const host = hostStats(snaps);
		expect(host.load1).toBe(0.5);
		expect(usedFraction(host.diskFree, host.diskTotal)).toBeCloseTo(0.95);
		expect(diskAttention(host)).toEqual({ kind: 'disk', id: 'data disk', message: '95% used, 5.00 GiB free' });
		expect(diskAttention({ ...host, diskFree: 50 * 1024 ** 3 })).toBeNull();
		expect(diskAttention({ ...host, diskTotal: null })).toBeNull();
	});
	it('formats by unit suffix', () => {
		expect(formatMetricValue('instance_rss_bytes', 2048)).toBe('2.00 KiB');
		expect(formatMetricValue('cpu_percent', 12.3)).toBe('12%');
		expect(formatMetricValue('http_request_duration_ms', 3.25)).toBe('3.3 ms');
		expect(formatMetricValue('uptime_seconds', 90)).toBe('1m 30s');
		expect(formatMetricValue('http_requests_total', 12345)).toBe('12,345');
		expect(formatMetricValue('requests_per_s', 0.25)).toBe('0.3/s');
		expect(formatMetricValue('load', 0.5)).toBe('0.50');
		expect(formatMs(2500)).toBe('2.5 s');
		expect(formatMs(0.42)).toBe('0.4 ms');
		expect(formatRate(0)).toBe('0/s');
		expect(formatRate(0.05)).toBe('0.05/s');
		expect(formatRate(1234)).toBe('1,234/s');
	});
});

describe('startPolling', () => {
	beforeEach(() => vi.useFakeTimers());
	afterEach(() => vi.useRealTimers());

	it('runs now, then every interval after each run, until stopped', async () => {
		const task = vi.fn(async () => undefined);
		const stop = startPolling(task, 1000, { isHidden: () => false });
		expect(task).toHaveBeenCalledTimes(1);
		await vi.advanceTimersByTimeAsync(1000);
		expect(task).toHaveBeenCalledTimes(2);
		await vi.advanceTimersByTimeAsync(3000);
		expect(task).toHaveBeenCalledTimes(5);
		stop();
		await vi.advanceTimersByTimeAsync(5000);
		expect(task).toHaveBeenCalledTimes(5);
	});

	it('never overlaps a slow task', async () => {
		let running = 0;
		let maxRunning = 0;
		const task = vi.fn(async () => {
			running++;
			maxRunning = Math.max(maxRunning, running);
			await new Promise((r) => setTimeout(r, 2500));
			running--;
		});
		const stop = startPolling(task, 1000, { isHidden: () => false });
		await vi.advanceTimersByTimeAsync(10_000);
		stop();
		expect(maxRunning).toBe(1);
		expect(task.mock.calls.length).toBeLessThanOrEqual(3);
	});

	it('skips ticks while hidden and reports errors', async () => {
		let hidden = true;
		const onError = vi.fn();
		const task = vi.fn(async () => {
			throw new Error('down');
		});
		const stop = startPolling(task, 1000, { isHidden: () => hidden, onError });
		await vi.advanceTimersByTimeAsync(3000);
		expect(task).not.toHaveBeenCalled();
		hidden = false;
		await vi.advanceTimersByTimeAsync(1000);
		expect(task).toHaveBeenCalledTimes(1);
		expect(onError).toHaveBeenCalledWith(expect.any(Error));
		stop();
	});
});
