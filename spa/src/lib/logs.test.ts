import { describe, expect, it } from 'vitest';
import {
	EMPTY_FILTERS,
	filtersFromParams,
	filtersToParams,
	formatLogLine,
	highlight,
	parseLaggedEvent,
	parseLogEvent,
	searchTerms,
	sinceForRange,
	toLogQuery
} from './logs';

describe('filters and the URL', () => {
	it('round-trips through query parameters', () => {
		const f = { ...EMPTY_FILTERS, search: 'timeout*', level: 'warn' as const, instance_id: 'notes:alice', range: '1h' };
		const params = filtersToParams(f);
		expect(params.toString()).toBe('search=timeout*&level=warn&instance_id=notes%3Aalice&range=1h');
		expect(filtersFromParams(params)).toEqual(f);
	});

	it('ignores unknown levels and ranges', () => {
		const f = filtersFromParams(new URLSearchParams('level=loud&range=forever&tenant_id=acme'));
		expect(f).toEqual({ ...EMPTY_FILTERS, tenant_id: 'acme' });
	});

	it('turns a range preset into an ISO start time', () => {
		const now = Date.parse('2025-06-01T12:00:00Z');
		expect(sinceForRange('15m', now)).toBe('2025-06-01T11:45:00.000Z');
		expect(sinceForRange('', now)).toBeUndefined();
		expect(sinceForRange('bogus', now)).toBeUndefined();
		expect(toLogQuery({ ...EMPTY_FILTERS, search: '  x  ', range: '1h' }, now)).toEqual({
			search: 'x',
			since: '2025-06-01T11:00:00.000Z'
		});
		expect(toLogQuery(EMPTY_FILTERS)).toEqual({});
	});
});

describe('search terms and highlighting', () => {
	it('keeps phrases, strips prefix stars and operators', () => {
		expect(searchTerms('"connection reset" timeout* AND db')).toEqual([
			'connection reset',
			'timeout',
			'db'
		]);
		expect(searchTerms('  ')).toEqual([]);
		expect(searchTerms('(foo) -bar')).toEqual(['foo', 'bar']);
	});

	it('marks matches case-insensitively', () => {
		expect(highlight('Connection RESET by peer', 'reset')).toEqual([
			{ text: 'Connection ', match: false },
			{ text: 'RESET', match: true },
			{ text: ' by peer', match: false }
		]);
	});

	it('treats regex characters in the query literally', () => {
		expect(highlight('cost is $5 (approx)', '"$5 (approx)"')).toEqual([
			{ text: 'cost is ', match: false },
			{ text: '$5 (approx)', match: true }
		]);
	});

	it('returns the message whole without a query', () => {
		expect(highlight('hello', '')).toEqual([{ text: 'hello', match: false }]);
		expect(highlight('', 'x')).toEqual([]);
	});
});

describe('stream events', () => {
	it('parses a log event', () => {
		const e = parseLogEvent(
			JSON.stringify({
				id: 7,
				timestamp: '2025-06-01T12:00:00Z',
				level: 'error',
				instance_id: 'notes:alice',
				tenant_id: null,
				stream: 'stderr',
				message: 'boom'
			})
		);
		expect(e).toEqual({
			id: 7,
			timestamp: '2025-06-01T12:00:00Z',
			level: 'error',
			instance_id: 'notes:alice',
			tenant_id: null,
			stream: 'stderr',
			message: 'boom'
		});
		expect(formatLogLine(e!)).toBe('2025-06-01T12:00:00Z ERROR notes:alice [stderr] boom');
	});

	it('fills in odd fields and rejects what is not a log entry', () => {
		const e = parseLogEvent('{"id": 1, "message": "x", "level": "loud", "stream": "weird"}');
		expect(e?.level).toBe('info');
		expect(e?.stream).toBe('stdout');
		expect(e?.instance_id).toBeNull();
		expect(parseLogEvent('not json')).toBeNull();
		expect(parseLogEvent('{"id": "1", "message": "x"}')).toBeNull();
		expect(parseLogEvent('null')).toBeNull();
	});

	it('reads the lagged count', () => {
		expect(parseLaggedEvent('{"missed": 12}')).toBe(12);
		expect(parseLaggedEvent('{}')).toBe(0);
		expect(parseLaggedEvent('junk')).toBe(0);
	});
});
