import { describe, expect, it } from 'vitest';
import { sharedRange, timeTickLabels, zoomFromSelection, type ChartData } from './chart';

// local time, as the charts show it
const at = (d: number, h: number, m: number, s = 0) => new Date(2026, 5, d, h, m, s).getTime();
const ticks = (from: number, step: number, n: number) =>
	Array.from({ length: n }, (_, i) => from + i * step);

describe('timeTickLabels', () => {
	it('shows hours and minutes for ticks minutes apart', () => {
		expect(timeTickLabels(ticks(at(1, 14, 0), 5 * 60_000, 3), 5 * 60_000)).toEqual([
			'14:00',
			'14:05',
			'14:10'
		]);
	});

	it('shows seconds for ticks under a minute apart, so none repeat', () => {
		const labels = timeTickLabels(ticks(at(1, 14, 5), 15_000, 6), 15_000);
		expect(labels).toEqual(['14:05:00', '14:05:15', '14:05:30', '14:05:45', '14:06:00', '14:06:15']);
	});

	it('names the day where a tick starts a new one', () => {
		expect(timeTickLabels(ticks(at(1, 23, 0), 30 * 60_000, 3), 30 * 60_000)).toEqual([
			'23:00',
			'23:30',
			'Jun 2'
		]);
		expect(timeTickLabels(ticks(at(1, 23, 50), 20 * 60_000, 2), 20 * 60_000)).toEqual([
			'23:50',
			'Jun 2 00:10'
		]);
	});

	it('shows the day alone for ticks a day apart', () => {
		expect(timeTickLabels(ticks(at(1, 0, 0), 86400_000, 3), 86400_000)).toEqual([
			'Jun 1',
			'Jun 2',
			'Jun 3'
		]);
	});

	it('never repeats a label, whatever the spacing', () => {
		// 12 h apart over days: "12:00" twice would be ambiguous, so every tick names its day
		const half = timeTickLabels(ticks(at(1, 12, 0), 12 * 3600_000, 4), 12 * 3600_000);
		expect(new Set(half).size).toBe(4);
		expect(half[0]).toBe('Jun 1 12:00');
		for (const step of [1000, 5000, 10_000, 30_000, 60_000, 300_000, 3600_000, 6 * 3600_000]) {
			const labels = timeTickLabels(ticks(at(1, 22, 0, 30), step, 10), step);
			expect(new Set(labels).size, `step ${step}`).toBe(10);
		}
		expect(timeTickLabels([], 60_000)).toEqual([]);
	});
});

describe('sharedRange and zoomFromSelection', () => {
	const chart = (xs: number[]): ChartData => ({ xs, series: [] });

	it('spans every chart of the group, ignoring empty ones', () => {
		expect(sharedRange([chart([10, 20, 30]), chart([]), chart([0, 60])])).toEqual([0, 60]);
		expect(sharedRange([chart([]), chart([5])])).toBeNull();
	});

	it('zooms to a dragged span either way, not to a click', () => {
		expect(zoomFromSelection(50_000, 10_000)).toEqual([10_000, 50_000]);
		expect(zoomFromSelection(10_000, 10_500)).toBeNull();
		expect(zoomFromSelection(Number.NaN, 10_000)).toBeNull();
	});
});
