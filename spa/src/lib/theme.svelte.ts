// Light or dark: the system's choice (prefers-color-scheme) unless the user picked one with the
// toggle, which is remembered in localStorage. app.html applies it before the first paint; this
// keeps <html class="light|dark"> in step afterwards.

export type ThemeChoice = 'system' | 'light' | 'dark';
export type Theme = 'light' | 'dark';

const KEY = 'slum-theme';

export const theme = $state<{ choice: ThemeChoice; applied: Theme }>({
	choice: 'system',
	applied: 'dark'
});

/** What a choice means given the system's preference. */
export function resolveTheme(choice: ThemeChoice, systemLight: boolean): Theme {
	if (choice === 'light' || choice === 'dark') return choice;
	return systemLight ? 'light' : 'dark';
}

/** The toggle's cycle: system -> the opposite of what shows now -> the other -> system. */
export function nextChoice(choice: ThemeChoice, applied: Theme): ThemeChoice {
	if (choice === 'system') return applied === 'dark' ? 'light' : 'dark';
	if (choice === 'light') return 'dark';
	return 'system';
}

function systemLight(): boolean {
	return typeof matchMedia !== 'undefined' && matchMedia('(prefers-color-scheme: light)').matches;
}

function apply(): void {
	theme.applied = resolveTheme(theme.choice, systemLight());
	const root = document.documentElement;
	root.classList.toggle('light', theme.applied === 'light');
	root.classList.toggle('dark', theme.applied === 'dark');
}

/** Read the saved choice and follow the system's changes; returns a stop function. */
export function startTheme(): () => void {
	try {
		const saved = localStorage.getItem(KEY);
		theme.choice = saved === 'light' || saved === 'dark' ? saved : 'system';
	} catch {
		theme.choice = 'system';
	}
	apply();
	const media = matchMedia('(prefers-color-scheme: light)');
	const onChange = () => apply();
	media.addEventListener('change', onChange);
	return () => media.removeEventListener('change', onChange);
}

export function setTheme(choice: ThemeChoice): void {
	theme.choice = choice;
	try {
		if (choice === 'system') localStorage.removeItem(KEY);
		else localStorage.setItem(KEY, choice);
	} catch {
		// private mode: the choice lasts for this page only
	}
	apply();
}
