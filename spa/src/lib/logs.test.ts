import { describe, expect, it } from 'vitest';
import {
	EMPTY_FILTERS,
	filtersFromParams,
	filtersToParams,
	formatLogLine,
	highlight,
	logsHref,
	parseLaggedEvent,
	parseLogEvent,
	parseStateEvent,
	searchTerms,
	sinceForRange,
	toLogQuery
} from './logs';

describe('filters and the URL', () => {
	it('round-trips through query parameters', () => {
		const f = { ...EMPTY_FILTERS, search: 'timeout*', level: 'warn' as const, instance_id: 'notes:alice', range: '1h' };
		const params = filtersToParams(f);
		expect(params.toString()).toBe('search=timeout*&level=warn&instance=notes%3Aalice&range=1h');
		expect(filtersFromParams(params)).toEqual(f);
	});

	it('reads the API spellings too', () => {
		expect(filtersFromParams(new URLSearchParams('instance_id=notes:bob&level=error+&tenant_id=acme'))).toEqual({
			...EMPTY_FILTERS,
			instance_id: 'notes:bob',
			tenant_id: 'acme',
			level: 'error'
		});
		expect(filtersFromParams(new URLSearchParams('min_level=info')).level).toBe('info');
	});

	it('ignores unknown levels and ranges', () => {
		const f = filtersFromParams(new URLSearchParams('level=loud&range=forever&tenant=acme'));
		expect(f).toEqual({ ...EMPTY_FILTERS, tenant_id: 'acme' });
		// debug and above is everything
		expect(filtersFromParams(new URLSearchParams('level=debug')).level).toBe('');
	});

	it('asks the API for this level and above, and since a relative time', () => {
		expect(sinceForRange('15m')).toBe('15m');
		expect(sinceForRange('')).toBeUndefined();
		expect(sinceForRange('bogus')).toBeUndefined();
		expect(toLogQuery({ ...EMPTY_FILTERS, search: '  x  ', range: '1h', level: 'warn' })).toEqual({
			search: 'x',
			min_level: 'warn',
			since: '1h'
		});
		expect(toLogQuery(EMPTY_FILTERS)).toEqual({});
	});

	it('builds links to the Logs page', () => {
		expect(logsHref('/_', { instance_id: 'notes:alice' })).toBe('/_/logs?instance=notes%3Aalice');
		expect(logsHref('/_', {})).toBe('/_/logs');
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

	it('parses a state event', () => {
		expect(parseStateEvent('{"id":"web:one","old":"healthy","new":"stopping","reason":"stop asked"}')).toEqual({
			id: 'web:one',
			old: 'healthy',
			new: 'stopping',
			reason: 'stop asked'
		});
		expect(parseStateEvent('{"id":"web:one","new":"stopped"}')).toEqual({
			id: 'web:one',
			old: '',
			new: 'stopped',
			reason: null
		});
		expect(parseStateEvent('{"old":"x"}')).toBeNull();
		expect(parseStateEvent('nope')).toBeNull();
	});

	it('reads the lagged count', () => {
		expect(parseLaggedEvent('{"missed": 12}')).toBe(12);
		expect(parseLaggedEvent('{}')).toBe(0);
		expect(parseLaggedEvent('junk')).toBe(0);
	});
});
