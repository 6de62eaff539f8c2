// The live log list: lines arrive one by one from the stream, are held in `pending`
// and moved into the visible list in batches (flush), so the page re-renders a few
// times a second instead of once per line. The visible list is capped; the oldest
// lines fall off the top. Pure and synchronous so it can be tested without a DOM.

import type { LogEntry } from './types';

export const DEFAULT_CAP = 1000;

export interface LogBufferStatistics {
	lines: number;
	pending: number;
	/** Lines that fell off the top because of the cap (or never shown, if the pending queue overflowed). */
	trimmed: number;
	/** Lines the server said it skipped for this client ("lagged" events). */
	missed: number;
	/** Entries ignored because their id was already known. */
	duplicates: number;
}

export interface FlushResult {
	added: number;
	trimmed: number;
}

export class LogBuffer {
	readonly cap: number;
	#lines: LogEntry[] = []; // oldest first
	#pending: LogEntry[] = [];
	#ids = new Set<number>(); // ids in #lines and #pending
	#trimmed = 0;
	#missed = 0;
	#duplicates = 0;

	constructor(cap: number = DEFAULT_CAP) {
		if (!Number.isInteger(cap) || cap < 1) throw new RangeError('cap must be a positive integer');
		this.cap = cap;
	}

	/** The visible lines, oldest first. A new array after each change (safe to hand to a view). */
	get lines(): readonly LogEntry[] {
		return this.#lines;
	}

	get pendingCount(): number {
		return this.#pending.length;
	}

	get oldest(): LogEntry | undefined {
		return this.#lines[0];
	}

	get newest(): LogEntry | undefined {
		return this.#pending.at(-1) ?? this.#lines.at(-1);
	}

	/** Queue one entry from the stream; duplicates (e.g. after a reconnect) are ignored. */
	push(entry: LogEntry): boolean {
		if (this.#ids.has(entry.id)) {
			this.#duplicates++;
			return false;
		}
		this.#ids.add(entry.id);
		this.#pending.push(entry);
		if (this.#pending.length > this.cap) {
			// more than a screenful while the view was held: only the newest `cap` can ever show
			const dropped = this.#pending.splice(0, this.#pending.length - this.cap);
			for (const e of dropped) this.#ids.delete(e.id);
			this.#trimmed += dropped.length;
		}
		return true;
	}

	/** Move pending lines into the visible list, in id order, and apply the cap. */
	flush(): FlushResult {
		if (this.#pending.length === 0) return { added: 0, trimmed: 0 };
		const incoming = this.#pending;
		this.#pending = [];
		let next = this.#lines.concat(incoming);
		const lastId = this.#lines.at(-1)?.id ?? -Infinity;
		const inOrder = incoming.every((e, i) => e.id > (i === 0 ? lastId : incoming[i - 1]!.id));
		if (!inOrder) next.sort((a, b) => a.id - b.id);
		let trimmed = 0;
		if (next.length > this.cap) {
			trimmed = next.length - this.cap;
			for (const e of next.slice(0, trimmed)) this.#ids.delete(e.id);
			next = next.slice(trimmed);
			this.#trimmed += trimmed;
		}
		this.#lines = next;
		return { added: incoming.length, trimmed };
	}

	/** Start over from a history page, which the API gives newest first. */
	replace(newestFirst: readonly LogEntry[]): void {
		const keep = newestFirst.slice(0, this.cap);
		this.#lines = [...keep].reverse();
		this.#lines.sort((a, b) => a.id - b.id);
		this.#pending = [];
		this.#ids = new Set(this.#lines.map((e) => e.id));
		this.#trimmed = 0;
		this.#missed = 0;
		this.#duplicates = 0;
	}

	/**
	 * Add older history (newest first, as the API returns it) above the current lines.
	 * The user asked for these, so the cap does not apply. Returns how many were new.
	 */
	prependOlder(newestFirst: readonly LogEntry[]): number {
		const oldestId = this.#lines[0]?.id ?? Infinity;
		const older = newestFirst.filter((e) => e.id < oldestId && !this.#ids.has(e.id));
		if (older.length === 0) return 0;
		older.sort((a, b) => a.id - b.id);
		for (const e of older) this.#ids.add(e.id);
		this.#lines = older.concat(this.#lines);
		return older.length;
	}

	/** The server dropped `n` lines for this client because it fell behind. */
	noteMissed(n: number): void {
		if (Number.isFinite(n) && n > 0) this.#missed += n;
	}

	clear(): void {
		this.replace([]);
	}

	statistics(): LogBufferStatistics {
		return Object.freeze({
			lines: this.#lines.length,
			pending: this.#pending.length,
			trimmed: this.#trimmed,
			missed: this.#missed,
			duplicates: this.#duplicates
		});
	}
}
