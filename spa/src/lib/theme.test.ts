import { describe, expect, it } from 'vitest';
import { nextChoice, resolveTheme } from './theme.svelte';

describe('theme', () => {
	it('follows the system unless a theme was picked', () => {
		expect(resolveTheme('system', true)).toBe('light');
		expect(resolveTheme('system', false)).toBe('dark');
		expect(resolveTheme('dark', true)).toBe('dark');
		expect(resolveTheme('light', false)).toBe('light');
	});

	it('cycles from the system to the opposite of what shows, then back to the system', () => {
		expect(nextChoice('system', 'dark')).toBe('light');
		expect(nextChoice('system', 'light')).toBe('dark');
		expect(nextChoice('light', 'light')).toBe('dark');
		expect(nextChoice('dark', 'dark')).toBe('system');
	});
});
