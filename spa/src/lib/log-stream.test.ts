import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LogStream, type StreamState } from './log-stream';
import type { LogEntry } from './types';

class FakeEventSource {
	static instances: FakeEventSource[] = [];
	readyState = 0;
	onopen: ((ev: Event) => unknown) | null = null;
	onerror: ((ev: Event) => unknown) | null = null;
	closed = false;
	listeners = new Map<string, ((ev: MessageEvent) => void)[]>();

	constructor(
		public url: string,
		public init?: EventSourceInit
	) {
		FakeEventSource.instances.push(this);
	}
	addEventListener(type: string, fn: (ev: MessageEvent) => void) {
		this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
	}
	close() {
		this.closed = true;
		this.readyState = 2;
	}
	// test helpers
	open() {
		this.readyState = 1;
		this.onopen?.(new Event('open'));
	}
	emit(type: string, data: unknown) {
		for (const fn of this.listeners.get(type) ?? []) {
			fn(new MessageEvent(type, { data: typeof data === 'string' ? data : JSON.stringify(data) }));
		}
	}
	fail(readyState: 0 | 2) {
		this.readyState = readyState;
		this.onerror?.(new Event('error'));
	}
}

const line = (id: number): LogEntry => ({
	id,
	timestamp: '2025-06-01T12:00:00Z',
	level: 'info',
	instance_id: null,
	tenant_id: null,
	stream: 'stdout',
	message: `m${id}`
});

describe('LogStream', () => {
	beforeEach(() => {
		FakeEventSource.instances = [];
		vi.useFakeTimers();
	});
	afterEach(() => vi.useRealTimers());

	function setup() {
		const entries: LogEntry[] = [];
		const states: StreamState[] = [];
		const lagged: number[] = [];
		const onclosed = vi.fn();
		const stream = new LogStream(
			'/_/api/logs/stream?level=warn',
			{
				onentry: (e) => entries.push(e),
				onlagged: (n) => lagged.push(n),
				onstate: (s) => states.push(s),
				onclosed
			},
			{ EventSource: FakeEventSource, retryMs: 1000, maxRetryMs: 4000 }
		);
		return { stream, entries, states, lagged, onclosed };
	}

	it('opens one EventSource and delivers named events', () => {
		const { stream, entries, states, lagged } = setup();
		stream.start();
		stream.start(); // idempotent
		expect(FakeEventSource.instances).toHaveLength(1);
		const es = FakeEventSource.instances[0]!;
		expect(es.url).toBe('/_/api/logs/stream?level=warn');
		expect(es.init?.withCredentials).toBe(true);
		es.open();
		es.emit('log', line(1));
		es.emit('log', 'garbage');
		es.emit('lagged', { missed: 3 });
		expect(entries.map((e) => e.id)).toEqual([1]);
		expect(lagged).toEqual([3]);
		expect(states).toEqual(['connecting', 'live']);
		stream.stop();
		expect(es.closed).toBe(true);
		expect(stream.state).toBe('off');
	});

	it('lets the browser retry a dropped connection itself', () => {
		const { stream, states, onclosed } = setup();
		stream.start();
		const es = FakeEventSource.instances[0]!;
		es.open();
		es.fail(0);
		expect(states.at(-1)).toBe('reconnecting');
		expect(onclosed).not.toHaveBeenCalled();
		es.open();
		expect(states.at(-1)).toBe('live');
		expect(FakeEventSource.instances).toHaveLength(1);
	});

	it('reconnects with backoff when the browser gives up', () => {
		const { stream, onclosed } = setup();
		stream.start();
		FakeEventSource.instances[0]!.fail(2);
		expect(onclosed).toHaveBeenCalledTimes(1);
		vi.advanceTimersByTime(999);
		expect(FakeEventSource.instances).toHaveLength(1);
		vi.advanceTimersByTime(1);
		expect(FakeEventSource.instances).toHaveLength(2);
		FakeEventSource.instances[1]!.fail(2);
		vi.advanceTimersByTime(1999);
		expect(FakeEventSource.instances).toHaveLength(2);
		vi.advanceTimersByTime(1);
		expect(FakeEventSource.instances).toHaveLength(3);
		expect(stream.statistics().reconnects).toBe(2);
		// a successful open resets the delay
		FakeEventSource.instances[2]!.open();
		expect(stream.statistics().nextDelayMs).toBe(1000);
	});

	it('stops retrying once stopped, and ignores a stale source', () => {
		const { stream, entries } = setup();
		stream.start();
		const first = FakeEventSource.instances[0]!;
		first.fail(2);
		stream.stop();
		vi.advanceTimersByTime(60_000);
		expect(FakeEventSource.instances).toHaveLength(1);
		first.emit('log', line(5));
		expect(entries).toEqual([]);
	});

	it('resumes a new connection after the last line and delivers state changes', () => {
		const urls: (number | null)[] = [];
		const changes: unknown[] = [];
		const stream = new LogStream(
			(lastId) => {
				urls.push(lastId);
				return `/_/api/logs/stream?states=1${lastId ? `&after_id=${lastId}` : ''}`;
			},
			{ onentry: () => undefined, onstatechange: (c) => changes.push(c) },
			{ EventSource: FakeEventSource, retryMs: 1000 }
		);
		stream.lastId = 3;
		stream.start();
		const first = FakeEventSource.instances[0]!;
		expect(first.url).toBe('/_/api/logs/stream?states=1&after_id=3');
		first.open();
		first.emit('log', line(7));
		first.emit('log', line(5)); // an older line does not move the cursor back
		first.emit('state', { id: 'web:one', old: 'healthy', new: 'stopping', reason: null });
		first.emit('state', 'garbage');
		expect(changes).toEqual([{ id: 'web:one', old: 'healthy', new: 'stopping', reason: null }]);
		expect(stream.lastId).toBe(7);
		first.fail(2);
		vi.advanceTimersByTime(1000);
		expect(FakeEventSource.instances[1]!.url).toBe('/_/api/logs/stream?states=1&after_id=7');
		expect(urls).toEqual([3, 7]);
		stream.stop();
	});
});
