import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LogPoll } from './log-poll';
import type { StreamState } from './log-stream';
import type { LogEntry } from './types';

function entry(id: number): LogEntry {
	return {
		id,
		timestamp: new Date(1_700_000_000_000 + id).toISOString(),
		level: 'info',
		instance_id: 'web:bob',
		tenant_id: 'bob',
		stream: 'stdout',
		message: `line ${id}`
	} as LogEntry;
}

describe('LogPoll', () => {
	beforeEach(() => vi.useFakeTimers());
	afterEach(() => vi.useRealTimers());

	it('asks after the newest line it holds and delivers each line once, oldest first', async () => {
		const asked: (number | null)[] = [];
		const answers = [[entry(3), entry(4)], [entry(4), entry(5)]];
		const got: number[] = [];
		const poll = new LogPoll(
			async (after) => {
				asked.push(after);
				return answers.shift() ?? [];
			},
			{ onentry: (e) => got.push(e.id) },
			1000
		);
		poll.lastId = 2;
		poll.start();
		await vi.advanceTimersByTimeAsync(0);
		await vi.advanceTimersByTimeAsync(1000);
		expect(asked).toEqual([2, 4]);
		expect(got).toEqual([3, 4, 5]);
		poll.stop();
	});

	it('says why an ask failed, keeps asking, and clears the error when the node answers', async () => {
		const states: StreamState[] = [];
		const errors: (string | null)[] = [];
		let down = true;
		const poll = new LogPoll(
			async () => {
				if (down) throw new Error('server far is offline');
				return [entry(7)];
			},
			{ onentry: () => undefined, onstate: (s) => states.push(s), onerror: (m) => errors.push(m) },
			500
		);
		poll.start();
		await vi.advanceTimersByTimeAsync(0);
		expect(poll.state).toBe('reconnecting');
		down = false;
		await vi.advanceTimersByTimeAsync(500);
		expect(poll.state).toBe('live');
		expect(errors).toEqual(['server far is offline', null]);
		expect(states).toEqual(['connecting', 'reconnecting', 'live']);
		poll.stop();
		expect(poll.state).toBe('off');
	});
});
