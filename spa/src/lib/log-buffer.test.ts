import { describe, expect, it } from 'vitest';
import { LogBuffer } from './log-buffer';
import type { LogEntry } from './types';

function entry(id: number, message = `line ${id}`): LogEntry {
	return {
		id,
		timestamp: new Date(1_700_000_000_000 + id * 1000).toISOString(),
		level: 'info',
		instance_id: 'notes:alice',
		tenant_id: null,
		stream: 'stdout',
		message
	};
}
const ids = (b: LogBuffer) => b.lines.map((e) => e.id);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('LogBuffer', () => {
	it('holds pushed lines until flushed', () => {
		const b = new LogBuffer(10);
		b.push(entry(1));
		b.push(entry(2));
		expect(b.lines).toEqual([]);
		expect(b.pendingCount).toBe(2);
		expect(b.newest?.id).toBe(2);
		expect(b.flush()).toEqual({ added: 2, trimmed: 0 });
		expect(ids(b)).toEqual([1, 2]);
		expect(b.pendingCount).toBe(0);
		expect(b.flush()).toEqual({ added: 0, trimmed: 0 });
	});

	it('starts from a history page given newest first', () => {
		const b = new LogBuffer(10);
		b.replace([entry(5), entry(4), entry(3)]);
		expect(ids(b)).toEqual([3, 4, 5]);
		expect(b.oldest?.id).toBe(3);
		expect(b.newest?.id).toBe(5);
	});

	it('keeps only the newest `cap` lines of a long history page', () => {
		const b = new LogBuffer(3);
		b.replace([entry(9), entry(8), entry(7), entry(6), entry(5)]);
		expect(ids(b)).toEqual([7, 8, 9]);
	});

	it('drops the oldest lines beyond the cap on flush', () => {
		const b = new LogBuffer(5);
		b.replace([entry(3), entry(2), entry(1)]);
		for (const i of range(4, 8)) b.push(entry(i));
		expect(b.flush()).toEqual({ added: 5, trimmed: 3 });
		expect(ids(b)).toEqual([4, 5, 6, 7, 8]);
		expect(b.statistics().trimmed).toBe(3);
	});

	it('ignores duplicates, e.g. after a reconnect or overlapping history', () => {
		const b = new LogBuffer(10);
		b.replace([entry(2), entry(1)]);
		expect(b.push(entry(2))).toBe(false);
		expect(b.push(entry(3))).toBe(true);
		expect(b.push(entry(3))).toBe(false);
		b.flush();
		expect(ids(b)).toEqual([1, 2, 3]);
		expect(b.statistics().duplicates).toBe(2);
	});

	it('puts out-of-order lines in id order', () => {
		const b = new LogBuffer(10);
		b.replace([entry(10)]);
		b.push(entry(12));
		b.push(entry(11));
		b.push(entry(9));
		b.flush();
		expect(ids(b)).toEqual([9, 10, 11, 12]);
	});

	it('bounds the pending queue while the view is held', () => {
		const b = new LogBuffer(4);
		b.replace([entry(1)]);
		for (const i of range(2, 11)) b.push(entry(i));
		expect(b.pendingCount).toBe(4);
		b.flush();
		// gap-free: nothing older than the newest `cap` could have been shown anyway
		expect(ids(b)).toEqual([8, 9, 10, 11]);
		expect(b.statistics().trimmed).toBe(7);
		// a line trimmed from the pending queue is not a duplicate if it comes again
		expect(b.push(entry(3))).toBe(true);
	});

	it('prepends older history above, without applying the cap', () => {
		const b = new LogBuffer(3);
		b.replace([entry(12), entry(11), entry(10)]);
		// newest first, overlapping the oldest known line
		expect(b.prependOlder([entry(10), entry(9), entry(8), entry(7)])).toBe(3);
		expect(ids(b)).toEqual([7, 8, 9, 10, 11, 12]);
		expect(b.prependOlder([entry(8)])).toBe(0);
		expect(b.prependOlder([])).toBe(0);
	});

	it('returns a new array when the lines change, so views notice', () => {
		const b = new LogBuffer(10);
		const before = b.lines;
		b.push(entry(1));
		expect(b.lines).toBe(before);
		b.flush();
		expect(b.lines).not.toBe(before);
	});

	it('counts lines the server skipped', () => {
		const b = new LogBuffer(10);
		b.noteMissed(5);
		b.noteMissed(0);
		b.noteMissed(-3);
		b.noteMissed(2);
		expect(b.statistics()).toEqual({ lines: 0, pending: 0, trimmed: 0, missed: 7, duplicates: 0 });
		b.clear();
		expect(b.statistics().missed).toBe(0);
	});

	it('refuses a nonsensical cap', () => {
		expect(() => new LogBuffer(0)).toThrow(RangeError);
		expect(() => new LogBuffer(1.5)).toThrow(RangeError);
	});
});
