import { describe, expect, it } from 'vitest';
import { isTyping, matchItems, type PaletteItem } from './palette';

const items: PaletteItem[] = [
	{ kind: 'page', label: 'Instances', href: '/_/instances' },
	{ kind: 'instance', label: 'web:one', href: '/_/instances/web%3Aone' },
	{ kind: 'instance', label: 'notes:demo', href: '/_/instances/notes%3Ademo' },
	{ kind: 'tenant', label: 'acme', href: '/_/tenants/acme' }
];

describe('matchItems', () => {
	it('keeps everything for an empty query', () => {
		expect(matchItems(items, '  ')).toHaveLength(4);
	});
	it('puts a prefix match first and needs every word', () => {
		expect(matchItems(items, 'one').map((i) => i.label)).toEqual(['web:one']);
		expect(matchItems(items, 'in').map((i) => i.label)).toEqual(['Instances']);
		expect(matchItems(items, 'notes demo').map((i) => i.label)).toEqual(['notes:demo']);
		expect(matchItems(items, 'zzz')).toEqual([]);
	});
	it('treats regex characters as text', () => {
		expect(matchItems(items, '(')).toEqual([]);
	});
});

describe('isTyping', () => {
	it('knows a text field from the page', () => {
		expect(isTyping(null)).toBe(false);
		expect(isTyping({ tagName: 'INPUT' } as unknown as EventTarget)).toBe(true);
		expect(isTyping({ tagName: 'DIV', isContentEditable: false } as unknown as EventTarget)).toBe(false);
	});
});
