// Log filters <-> URL, FTS-aware highlighting, log-line parsing of stream events.

import type { LogEntry, LogLevel, LogQuery, StateEvent } from './types';
import { LOG_LEVELS } from './types';

export interface LogFilters {
	search: string;
	/** The lowest level shown: 'warn' shows warnings and errors. '' shows everything. */
	level: LogLevel | '';
	instance_id: string;
	tenant_id: string;
	/** A preset like "15m", "1h", "24h", "7d", or '' for all time. */
	range: string;
}

export const EMPTY_FILTERS: LogFilters = {
	search: '',
	level: '',
	instance_id: '',
	tenant_id: '',
	range: ''
};

/** The level filter's choices: each one means "this level and above". */
export const LEVEL_CHOICES: { value: LogLevel | ''; label: string }[] = [
	{ value: '', label: 'All levels' },
	{ value: 'info', label: 'Info and above' },
	{ value: 'warn', label: 'Warnings and errors' },
	{ value: 'error', label: 'Errors only' }
];

export const RANGE_PRESETS: { value: string; label: string; seconds: number }[] = [
	{ value: '', label: 'All time', seconds: 0 },
	{ value: '15m', label: 'Last 15 minutes', seconds: 15 * 60 },
	{ value: '1h', label: 'Last hour', seconds: 3600 },
	{ value: '6h', label: 'Last 6 hours', seconds: 6 * 3600 },
	{ value: '24h', label: 'Last 24 hours', seconds: 24 * 3600 },
	{ value: '7d', label: 'Last 7 days', seconds: 7 * 86400 }
];

/**
 * Filters from the page URL. `instance` and `tenant` are the short forms the dashboard writes
 * (`/_/logs?instance=notes:alice`); `instance_id`, `tenant_id` and `level=warn+` (the API's
 * spellings) are read too, so links built from API parameters work.
 */
export function filtersFromParams(params: URLSearchParams): LogFilters {
	// 'warn+' arrives as 'warn ' when the + is not escaped
	const level = (params.get('level') ?? params.get('min_level') ?? '').trim().replace(/\+$/, '');
	const range = params.get('range') ?? params.get('since') ?? '';
	return {
		search: params.get('search') ?? params.get('q') ?? '',
		level: (LOG_LEVELS as readonly string[]).includes(level) && level !== 'debug' ? (level as LogLevel) : '',
		instance_id: params.get('instance') ?? params.get('instance_id') ?? '',
		tenant_id: params.get('tenant') ?? params.get('tenant_id') ?? '',
		range: RANGE_PRESETS.some((p) => p.value === range) ? range : ''
	};
}

/** Only the non-empty filters, in a fixed order, so URLs are stable. */
export function filtersToParams(f: LogFilters): URLSearchParams {
	const out = new URLSearchParams();
	const names = { search: 'search', level: 'level', instance_id: 'instance', tenant_id: 'tenant', range: 'range' } as const;
	for (const key of ['search', 'level', 'instance_id', 'tenant_id', 'range'] as const) {
		const v = f[key].trim();
		if (v) out.set(names[key], v);
	}
	return out;
}

/** The API's `since` for a range preset ('15m', '24h', ... are understood as "ago"). */
export function sinceForRange(range: string): string | undefined {
	const preset = RANGE_PRESETS.find((p) => p.value === range);
	return preset && preset.seconds ? preset.value : undefined;
}

export function toLogQuery(f: LogFilters): LogQuery {
	const q: LogQuery = {};
	if (f.search.trim()) q.search = f.search.trim();
	if (f.level) q.min_level = f.level;
	if (f.instance_id.trim()) q.instance_id = f.instance_id.trim();
	if (f.tenant_id.trim()) q.tenant_id = f.tenant_id.trim();
	const since = sinceForRange(f.range);
	if (since) q.since = since;
	return q;
}

/** A link to the Logs page with these filters. */
export function logsHref(base: string, f: Partial<LogFilters>): string {
	const qs = filtersToParams({ ...EMPTY_FILTERS, ...f }).toString();
	return `${base}/logs${qs ? `?${qs}` : ''}`;
}

const FTS_OPERATORS = new Set(['AND', 'OR', 'NOT', 'NEAR']);

/**
 * The words of an FTS query as the user typed them: quoted phrases stay whole,
 * `foo*` becomes the prefix `foo`, operators and stray punctuation are dropped.
 */
export function searchTerms(query: string): string[] {
	const terms: string[] = [];
	const re = /"([^"]*)"|(\S+)/g;
	let m: RegExpExecArray | null;
	while ((m = re.exec(query)) !== null) {
		if (m[1] !== undefined) {
			const phrase = m[1].trim();
			if (phrase) terms.push(phrase);
			continue;
		}
		const word = m[2] ?? '';
		if (FTS_OPERATORS.has(word)) continue;
		const cleaned = word.replace(/^[^\p{L}\p{N}_]+|[^\p{L}\p{N}_]+$/gu, '');
		if (cleaned) terms.push(cleaned);
	}
	// longest first so that "error" wins over "err" at the same position
	return [...new Set(terms)].sort((a, b) => b.length - a.length);
}

export interface Segment {
	text: string;
	match: boolean;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Split a message into plain and matching parts (case-insensitive) for <mark>ing. */
export function highlight(message: string, query: string): Segment[] {
	const terms = searchTerms(query);
	if (!terms.length || !message) return message ? [{ text: message, match: false }] : [];
	const re = new RegExp(terms.map(escapeRegExp).join('|'), 'giu');
	const out: Segment[] = [];
	let last = 0;
	for (const m of message.matchAll(re)) {
		const start = m.index ?? 0;
		if (m[0].length === 0) continue;
		if (start > last) out.push({ text: message.slice(last, start), match: false });
		out.push({ text: m[0], match: true });
		last = start + m[0].length;
	}
	if (last < message.length) out.push({ text: message.slice(last), match: false });
	return out;
}

/** Parse one SSE `log` event's data; null for anything that is not a LogEntry. */
export function parseLogEvent(data: string): LogEntry | null {
	let v: unknown;
	try {
		v = JSON.parse(data);
	} catch {
		return null;
	}
	if (!v || typeof v !== 'object') return null;
	const e = v as Partial<LogEntry>;
	if (typeof e.id !== 'number' || typeof e.message !== 'string') return null;
	return {
		id: e.id,
		timestamp: typeof e.timestamp === 'string' ? e.timestamp : new Date().toISOString(),
		level: (LOG_LEVELS as readonly string[]).includes(e.level as string)
			? (e.level as LogLevel)
			: 'info',
		instance_id: e.instance_id ?? null,
		tenant_id: e.tenant_id ?? null,
		stream: e.stream === 'stderr' || e.stream === 'system' ? e.stream : 'stdout',
		message: e.message
	};
}

/** `{"id", "old", "new", "reason"}` of a `state` event; null when unreadable. */
export function parseStateEvent(data: string): StateEvent | null {
	try {
		const v = JSON.parse(data) as Partial<StateEvent>;
		if (!v || typeof v.id !== 'string' || typeof v.new !== 'string') return null;
		return {
			id: v.id,
			old: typeof v.old === 'string' ? v.old : '',
			new: v.new,
			reason: typeof v.reason === 'string' ? v.reason : null
		};
	} catch {
		return null;
	}
}

/** `{"missed": n}` of a `lagged` event; 0 when unreadable. */
export function parseLaggedEvent(data: string): number {
	try {
		const v = JSON.parse(data) as { missed?: unknown };
		return typeof v.missed === 'number' && v.missed > 0 ? v.missed : 0;
	} catch {
		return 0;
	}
}

/** A single text line, for "copy" and downloads. */
export function formatLogLine(e: LogEntry): string {
	const who = e.instance_id ?? e.tenant_id ?? '-';
	return `${e.timestamp} ${e.level.toUpperCase().padEnd(5)} ${who} [${e.stream}] ${e.message}`;
}
