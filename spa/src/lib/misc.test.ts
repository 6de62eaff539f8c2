import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { counterRate, pushSample, sparklinePath } from './chart';
import {
	formatMetricValue,
	metricsForInstance,
	metricTitle,
	summarizeMetrics
} from './metrics';
import { startPolling } from './poll';
import type { MetricSnapshot } from './types';

describe('sparklinePath', () => {
	it('scales values into the box, top is the maximum', () => {
		expect(sparklinePath([0, 10], 100, 20, 0)).toBe('M0,20L100,0');
		expect(sparklinePath([0, 5, 10], 10, 10, 1)).toBe('M1,9L5,5L9,1');
	});
	it('draws flat series in the middle and skips non-finite values', () => {
		expect(sparklinePath([3, 3, 3], 10, 10, 0)).toBe('M0,5L5,5L10,5');
		expect(sparklinePath([7], 10, 10, 0)).toBe('M0,5L10,5');
		expect(sparklinePath([1, Number.NaN, 2], 10, 10, 0)).toBe('M0,10L10,0');
		expect(sparklinePath([], 10, 10)).toBe('');
	});
});

describe('series helpers', () => {
	it('keeps a rolling window', () => {
		expect(pushSample([1, 2, 3], 4, 3)).toEqual([2, 3, 4]);
		expect(pushSample([], 1, 3)).toEqual([1]);
	});
	it('derives per-second rates from a counter, treating resets as zero', () => {
		expect(
			counterRate([
				[0, 10],
				[1000, 20],
				[3000, 30],
				[4000, 5],
				[4000, 6]
			])
		).toEqual([
			[1000, 10],
			[3000, 5],
			[4000, 0]
		]);
	});
});

describe('metrics', () => {
	const snaps: MetricSnapshot[] = [
		{ name: 'http_requests_total', value: 5, labels: { instance: 'notes:alice' }, timestamp: 1 },
		{ name: 'http_requests_total', value: 7, labels: { instance: 'notes:bob' }, timestamp: 3 },
		{ name: 'instance_rss_bytes', value: 2048, labels: { instance_id: 'notes:alice' }, timestamp: 2 }
	];
	it('sums label sets per name', () => {
		expect(summarizeMetrics(snaps)).toEqual([
			{ name: 'http_requests_total', total: 12, labelSets: 2, timestamp: 3 },
			{ name: 'instance_rss_bytes', total: 2048, labelSets: 1, timestamp: 2 }
		]);
	});
	it('finds an instance by any label value', () => {
		expect(metricsForInstance(snaps, 'notes:alice').map((s) => s.name)).toEqual([
			'http_requests_total',
			'instance_rss_bytes'
		]);
	});
	it('formats by unit suffix', () => {
		expect(formatMetricValue('instance_rss_bytes', 2048)).toBe('2.00 KiB');
		expect(formatMetricValue('cpu_percent', 12.3)).toBe('12%');
		expect(formatMetricValue('http_request_duration_ms', 3.25)).toBe('3.3 ms');
		expect(formatMetricValue('uptime_seconds', 90)).toBe('1m 30s');
		expect(formatMetricValue('http_requests_total', 12345)).toBe('12,345');
		expect(formatMetricValue('load', 0.5)).toBe('0.50');
		expect(metricTitle('slum_http_requests_total')).toBe('Http requests total');
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
