// Run `task` now and then every `intervalMs` after it finishes (never overlapping),
// skipping ticks while the page is hidden. Returns a stop function.

export interface PollOptions {
	isHidden?: () => boolean;
	onError?: (err: unknown) => void;
}

export function startPolling(
	task: () => Promise<unknown>,
	intervalMs: number,
	options: PollOptions = {}
): () => void {
	const isHidden =
		options.isHidden ??
		(() => typeof document !== 'undefined' && document.visibilityState === 'hidden');
	let stopped = false;
	let timer: ReturnType<typeof setTimeout> | undefined;

	const tick = async () => {
		if (stopped) return;
		if (!isHidden()) {
			try {
				await task();
			} catch (err) {
				options.onError?.(err);
			}
		}
		if (!stopped) timer = setTimeout(tick, intervalMs);
	};

	void tick();
	return () => {
		stopped = true;
		if (timer !== undefined) clearTimeout(timer);
	};
}

/**
 * A detail page's polling, started over for each new id: `restart(reset)` stops the last one,
 * runs `reset` (clear what the last id showed) and polls again; `stop` ends it.
 */
export function pollPerPage(task: () => Promise<unknown>, intervalMs: number) {
	let stop: (() => void) | undefined;
	return {
		restart(reset: () => void) {
			stop?.();
			reset();
			stop = startPolling(task, intervalMs);
		},
		stop() {
			stop?.();
			stop = undefined;
		}
	};
}
