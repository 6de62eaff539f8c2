// The live tail of a tenant on another node. Its lines are stored there, and this node's
// stream never carries them, so they are asked for (`after_id`, oldest first) every few seconds
// through this node's /logs, which forwards to the tenant's node. Same shape as LogStream, so the
// viewer follows either one; a failed ask says why (the node is down) and is tried again.

import type { LogEntry } from './types';
import type { StreamState } from './log-stream';

export interface LogPollHandlers {
	onentry: (entry: LogEntry) => void;
	onstate?: (state: StreamState) => void;
	/** Why the last ask failed; null once an ask works again. */
	onerror?: (message: string | null) => void;
}

/** Lines after `afterId`, oldest first (null: the newest page). */
export type FetchAfter = (afterId: number | null) => Promise<LogEntry[]>;

export class LogPoll {
	#fetch: FetchAfter;
	#handlers: LogPollHandlers;
	#intervalMs: number;
	#timer: ReturnType<typeof setTimeout> | undefined;
	#running = false;
	#state: StreamState = 'off';
	lastId: number | null = null;

	constructor(fetchAfter: FetchAfter, handlers: LogPollHandlers, intervalMs = 3000) {
		this.#fetch = fetchAfter;
		this.#handlers = handlers;
		this.#intervalMs = intervalMs;
	}

	get state(): StreamState {
		return this.#state;
	}

	start(): void {
		if (this.#running) return;
		this.#running = true;
		this.#set('connecting');
		void this.#tick();
	}

	stop(): void {
		this.#running = false;
		clearTimeout(this.#timer);
		this.#set('off');
	}

	async #tick(): Promise<void> {
		try {
			const rows = await this.#fetch(this.lastId);
			if (!this.#running) return;
			// after_id answers oldest first; the newest page (no id yet) newest first
			const ordered = this.lastId === null ? [...rows].reverse() : rows;
			for (const e of ordered) {
				if (this.lastId === null || e.id > this.lastId) {
					this.#handlers.onentry(e);
					this.lastId = e.id;
				}
			}
			this.#handlers.onerror?.(null);
			this.#set('live');
		} catch (err) {
			if (!this.#running) return;
			this.#handlers.onerror?.(err instanceof Error ? err.message : String(err));
			this.#set('reconnecting');
		}
		if (this.#running) this.#timer = setTimeout(() => void this.#tick(), this.#intervalMs);
	}

	#set(state: StreamState): void {
		if (state === this.#state) return;
		this.#state = state;
		this.#handlers.onstate?.(state);
	}
}
