// Small, pure formatters. Missing values render as an em dash so columns keep their shape.

export const DASH = '—';

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 -> "1.5 KiB"; binary units, three significant digits. */
export function formatBytes(bytes: number | null | undefined): string {
	if (bytes === null || bytes === undefined || !Number.isFinite(bytes) || bytes < 0) return DASH;
	if (bytes < 1024) return `${Math.round(bytes)} B`;
	let value = bytes;
	let unit = 0;
	while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
		value /= 1024;
		unit++;
	}
	// 1023.95 KiB would print as "1024 KiB": move up instead
	if (value >= 999.5 && unit < BYTE_UNITS.length - 1) {
		value /= 1024;
		unit++;
	}
	const digits = value < 10 ? 2 : value < 100 ? 1 : 0;
	return `${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

/** Seconds -> "45s", "3m 12s", "2h 05m", "3d 4h". Two units at most. */
export function formatDuration(seconds: number | null | undefined): string {
	if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
		return DASH;
	}
	const s = Math.floor(seconds);
	if (s < 60) return `${s}s`;
	const m = Math.floor(s / 60);
	if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
	const h = Math.floor(m / 60);
	if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
	const d = Math.floor(h / 24);
	return `${d}d ${h % 24}h`;
}

/** Uptime of an instance: nothing to show when it is not running. */
export function formatUptime(seconds: number | null | undefined, running: boolean): string {
	if (!running || !seconds) return DASH;
	return formatDuration(seconds);
}

/** 3.14159 -> "3.1%"; below 10 keeps one decimal, above it none. */
export function formatPercent(value: number | null | undefined): string {
	if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
	return `${value < 10 ? value.toFixed(1) : Math.round(value)}%`;
}

/** 12345 -> "12,345" (en-US grouping regardless of locale, for stable tests). */
export function formatCount(value: number | null | undefined): string {
	if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
	return Math.round(value).toLocaleString('en-US');
}

/** Accepts an ISO string, ms since the epoch or a Date; null when unparseable. */
export function toDate(value: string | number | Date | null | undefined): Date | null {
	if (value === null || value === undefined || value === '') return null;
	const d = value instanceof Date ? value : new Date(value);
	return Number.isNaN(d.getTime()) ? null : d;
}

/** "just now", "42s ago", "5 min ago", "3 h ago", "2 d ago", or "in 5 min". */
export function formatRelative(
	value: string | number | Date | null | undefined,
	now: number = Date.now()
): string {
	const d = toDate(value);
	if (!d) return DASH;
	const diff = Math.round((now - d.getTime()) / 1000);
	const abs = Math.abs(diff);
	if (abs < 5) return 'just now';
	let text: string;
	if (abs < 60) text = `${abs}s`;
	else if (abs < 3600) text = `${Math.floor(abs / 60)} min`;
	else if (abs < 86400) text = `${Math.floor(abs / 3600)} h`;
	else if (abs < 86400 * 60) text = `${Math.floor(abs / 86400)} d`;
	else if (abs < 86400 * 730) text = `${Math.floor(abs / (86400 * 30))} mo`;
	else text = `${Math.floor(abs / (86400 * 365))} y`;
	return diff >= 0 ? `${text} ago` : `in ${text}`;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Local wall-clock time of a log line: "14:03:07.123". */
export function formatClock(value: string | number | Date | null | undefined): string {
	const d = toDate(value);
	if (!d) return DASH;
	return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${String(
		d.getMilliseconds()
	).padStart(3, '0')}`;
}

/** Local date and time: "2025-11-27 14:03:07". */
export function formatDateTime(value: string | number | Date | null | undefined): string {
	const d = toDate(value);
	if (!d) return DASH;
	return (
		`${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
		`${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`
	);
}

/** "2025-11-27" when the day differs from `now`'s, else "". Used to date older log lines. */
export function dayIfNotToday(
	value: string | number | Date | null | undefined,
	now: number = Date.now()
): string {
	const d = toDate(value);
	if (!d) return '';
	const today = new Date(now);
	if (
		d.getFullYear() === today.getFullYear() &&
		d.getMonth() === today.getMonth() &&
		d.getDate() === today.getDate()
	) {
		return '';
	}
	return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
}

/** "1 instance", "3 instances". */
export function plural(n: number, one: string, many = `${one}s`): string {
	return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/** A command line as one would type it: arguments with spaces or quotes get quoted. */
export function shellJoin(argv: readonly string[]): string {
	return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ');
}
