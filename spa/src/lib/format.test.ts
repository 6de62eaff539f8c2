import { describe, expect, it } from 'vitest';
import {
	DASH,
	dayIfNotToday,
	formatBytes,
	formatClock,
	formatCount,
	formatDateTime,
	formatDuration,
	formatPercent,
	formatRelative,
	formatUptime,
	shellJoin,
	plural,
	toDate
} from './format';

describe('formatBytes', () => {
	it.each([
		[0, '0 B'],
		[512, '512 B'],
		[1023, '1023 B'],
		[1024, '1.00 KiB'],
		[1536, '1.50 KiB'],
		[10 * 1024, '10.0 KiB'],
		[150 * 1024 * 1024, '150 MiB'],
		[1023.9 * 1024, '1.00 MiB'],
		[3.5 * 1024 ** 3, '3.50 GiB']
	])('%d -> %s', (n, s) => expect(formatBytes(n)).toBe(s));

	it('renders missing or nonsense values as a dash', () => {
		expect(formatBytes(null)).toBe(DASH);
		expect(formatBytes(undefined)).toBe(DASH);
		expect(formatBytes(-1)).toBe(DASH);
		expect(formatBytes(Number.NaN)).toBe(DASH);
	});
});

describe('formatDuration', () => {
	it.each([
		[0, '0s'],
		[45.9, '45s'],
		[60, '1m 00s'],
		[192, '3m 12s'],
		[3600, '1h 00m'],
		[2 * 3600 + 5 * 60 + 9, '2h 05m'],
		[86400, '1d 0h'],
		[3 * 86400 + 4 * 3600 + 59, '3d 4h']
	])('%d s -> %s', (n, s) => expect(formatDuration(n)).toBe(s));

	it('dashes missing values', () => {
		expect(formatDuration(null)).toBe(DASH);
		expect(formatDuration(-5)).toBe(DASH);
	});
});

describe('formatUptime', () => {
	it('shows nothing for an instance that is not running', () => {
		expect(formatUptime(120, false)).toBe(DASH);
		expect(formatUptime(0, true)).toBe(DASH);
		expect(formatUptime(120, true)).toBe('2m 00s');
	});
});

describe('formatPercent and formatCount', () => {
	it('keeps one decimal below ten', () => {
		expect(formatPercent(3.14159)).toBe('3.1%');
		expect(formatPercent(0)).toBe('0.0%');
		expect(formatPercent(42.6)).toBe('43%');
		expect(formatPercent(null)).toBe(DASH);
	});
	it('groups thousands', () => {
		expect(formatCount(1234567)).toBe('1,234,567');
		expect(formatCount(undefined)).toBe(DASH);
		expect(plural(1, 'tenant')).toBe('1 tenant');
		expect(plural(2, 'tenant')).toBe('2 tenants');
	});
});

describe('formatRelative', () => {
	const now = Date.parse('2025-06-01T12:00:00Z');
	it.each([
		['2025-06-01T12:00:00Z', 'just now'],
		['2025-06-01T11:59:18Z', '42s ago'],
		['2025-06-01T11:55:00Z', '5 min ago'],
		['2025-06-01T09:00:00Z', '3 h ago'],
		['2025-05-30T12:00:00Z', '2 d ago'],
		['2025-01-01T12:00:00Z', '5 mo ago'],
		['2022-06-01T12:00:00Z', '3 y ago'],
		['2025-06-01T12:05:00Z', 'in 5 min']
	])('%s -> %s', (iso, s) => expect(formatRelative(iso, now)).toBe(s));

	it('accepts ms and Date, rejects garbage', () => {
		expect(formatRelative(now - 10_000, now)).toBe('10s ago');
		expect(formatRelative(new Date(now - 120_000), now)).toBe('2 min ago');
		expect(formatRelative('not a date', now)).toBe(DASH);
		expect(formatRelative(null, now)).toBe(DASH);
		expect(toDate('')).toBeNull();
	});
});

describe('clock and date', () => {
	it('formats local wall-clock time with milliseconds', () => {
		const d = new Date(2025, 0, 2, 3, 4, 5, 6);
		expect(formatClock(d)).toBe('03:04:05.006');
		expect(formatDateTime(d)).toBe('2025-01-02 03:04:05');
		expect(formatClock('nope')).toBe(DASH);
	});
	it('dates only lines from another day', () => {
		const now = new Date(2025, 0, 2, 23, 0, 0).getTime();
		expect(dayIfNotToday(new Date(2025, 0, 2, 1, 0, 0), now)).toBe('');
		expect(dayIfNotToday(new Date(2025, 0, 1, 23, 59, 0), now)).toBe('2025-01-01');
	});
});

describe('shellJoin', () => {
	it('quotes only the arguments a shell would split or interpret', () => {
		expect(shellJoin(['python3', '-m', 'http.server', '--bind=127.0.0.1'])).toBe('python3 -m http.server --bind=127.0.0.1');
		expect(shellJoin(['sh', '-c', 'echo hi'])).toBe("sh -c 'echo hi'");
		expect(shellJoin(["it's"])).toBe(`'it'\\''s'`);
		expect(shellJoin(['a$b', ''])).toBe("'a$b' ''");
	});
});
