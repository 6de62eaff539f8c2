// What the Ctrl-K palette offers and how typing narrows it. Pure, for unit tests.

export interface PaletteItem {
	kind: 'page' | 'instance' | 'tenant' | 'server';
	label: string;
	detail?: string;
	href: string;
}

/**
 * Items whose label holds every typed word, best first: a label that starts with the query,
 * then one where a word starts with it, then any other match; pages before the rest on a tie.
 */
export function matchItems(items: readonly PaletteItem[], query: string): PaletteItem[] {
	const q = query.trim().toLowerCase();
	if (!q) return [...items];
	const words = q.split(/\s+/);
	const scored: { item: PaletteItem; score: number; index: number }[] = [];
	items.forEach((item, index) => {
		const label = item.label.toLowerCase();
		if (!words.every((w) => label.includes(w))) return;
		let score = 2;
		if (label.startsWith(q)) score = 0;
		else if (new RegExp(`(^|[^a-z0-9])${escape(words[0]!)}`).test(label)) score = 1;
		scored.push({ item, score, index });
	});
	scored.sort((a, b) => a.score - b.score || a.index - b.index);
	return scored.map((s) => s.item);
}

function escape(s: string): string {
	return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whether a key press belongs to a text field (then `/` types a slash, not a shortcut). */
export function isTyping(target: EventTarget | null): boolean {
	if (!target || typeof (target as HTMLElement).tagName !== 'string') return false;
	const el = target as HTMLElement;
	const tag = el.tagName.toLowerCase();
	return tag === 'input' || tag === 'textarea' || tag === 'select' || el.isContentEditable;
}
