// One EventSource per page, with named events: `log` (a LogEntry; its SSE id is the entry id),
// `lagged` {missed} and, when asked for, `state` {id, old, new, reason}.
// The browser reconnects by itself after a dropped connection (sending Last-Event-ID);
// when it gives up (an HTTP error such as 401, or the server went away) we open a new one
// later, backing off, and ask it to resume after the last line we got.

import { parseLaggedEvent, parseLogEvent, parseStateEvent } from './logs';
import type { LogEntry, StateEvent } from './types';

export type StreamState = 'off' | 'connecting' | 'live' | 'reconnecting';

export interface LogStreamHandlers {
	onentry: (entry: LogEntry) => void;
	onlagged?: (missed: number) => void;
	/** An instance changed state (only when the URL asks for states). */
	onstatechange?: (event: StateEvent) => void;
	onstate?: (state: StreamState) => void;
	/** The browser gave up on the connection; e.g. check whether the session expired. */
	onclosed?: () => void;
}

interface EventSourceLike {
	readyState: number;
	onopen: ((ev: Event) => unknown) | null;
	onerror: ((ev: Event) => unknown) | null;
	addEventListener(type: string, listener: (ev: MessageEvent) => void): void;
	close(): void;
}

type EventSourceCtor = new (url: string, init?: EventSourceInit) => EventSourceLike;

export interface LogStreamOptions {
	EventSource?: EventSourceCtor;
	retryMs?: number;
	maxRetryMs?: number;
}

const CLOSED = 2;

/** The stream URL; given the id of the last line received, so a new connection resumes there. */
export type StreamUrl = string | ((lastId: number | null) => string);

export class LogStream {
	#url: StreamUrl;
	#handlers: LogStreamHandlers;
	#ctor: EventSourceCtor | undefined;
	#retryMs: number;
	#maxRetryMs: number;
	#delay: number;
	#es: EventSourceLike | null = null;
	#timer: ReturnType<typeof setTimeout> | undefined;
	#state: StreamState = 'off';
	#reconnects = 0;
	#lastId: number | null = null;

	constructor(url: StreamUrl, handlers: LogStreamHandlers, options: LogStreamOptions = {}) {
		this.#url = url;
		this.#handlers = handlers;
		this.#ctor =
			options.EventSource ??
			(typeof EventSource === 'undefined' ? undefined : (EventSource as EventSourceCtor));
		this.#retryMs = options.retryMs ?? 2000;
		this.#maxRetryMs = options.maxRetryMs ?? 30000;
		this.#delay = this.#retryMs;
	}

	get state(): StreamState {
		return this.#state;
	}

	/** Id of the newest log line received. */
	get lastId(): number | null {
		return this.#lastId;
	}

	/** Resume after this id on the next connection (e.g. the newest line already shown). */
	set lastId(id: number | null) {
		this.#lastId = id;
	}

	statistics() {
		return Object.freeze({ state: this.#state, reconnects: this.#reconnects, nextDelayMs: this.#delay });
	}

	start(): void {
		if (this.#es || this.#timer !== undefined) return;
		this.#open();
	}

	stop(): void {
		if (this.#timer !== undefined) clearTimeout(this.#timer);
		this.#timer = undefined;
		this.#es?.close();
		this.#es = null;
		this.#setState('off');
	}

	#setState(s: StreamState) {
		if (s === this.#state) return;
		this.#state = s;
		this.#handlers.onstate?.(s);
	}

	#open() {
		this.#timer = undefined;
		if (!this.#ctor) {
			this.#setState('off');
			return;
		}
		this.#setState(this.#reconnects ? 'reconnecting' : 'connecting');
		const url = typeof this.#url === 'function' ? this.#url(this.#lastId) : this.#url;
		const es = new this.#ctor(url, { withCredentials: true });
		this.#es = es;
		es.onopen = () => {
			if (this.#es !== es) return;
			this.#delay = this.#retryMs;
			this.#setState('live');
		};
		es.onerror = () => {
			if (this.#es !== es) return;
			if (es.readyState === CLOSED) {
				es.close();
				this.#es = null;
				this.#reconnects++;
				this.#setState('reconnecting');
				this.#handlers.onclosed?.();
				this.#timer = setTimeout(() => this.#open(), this.#delay);
				this.#delay = Math.min(this.#delay * 2, this.#maxRetryMs);
			} else {
				this.#setState('reconnecting');
			}
		};
		es.addEventListener('log', (ev) => {
			if (this.#es !== es) return;
			const entry = parseLogEvent(String(ev.data));
			if (!entry) return;
			if (this.#lastId === null || entry.id > this.#lastId) this.#lastId = entry.id;
			this.#handlers.onentry(entry);
		});
		es.addEventListener('state', (ev) => {
			if (this.#es !== es) return;
			const change = parseStateEvent(String(ev.data));
			if (change) this.#handlers.onstatechange?.(change);
		});
		es.addEventListener('lagged', (ev) => {
			if (this.#es !== es) return;
			const n = parseLaggedEvent(String(ev.data));
			if (n) this.#handlers.onlagged?.(n);
		});
	}
}
