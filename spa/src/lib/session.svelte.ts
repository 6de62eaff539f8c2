// The one API client of the app, and what it knows about the login session.
// Any 401 sends the user to the login page, remembering where they were.

import { goto } from '$app/navigation';
import { resolve } from '$app/paths';
import { createClient, type UnauthorizedError } from './api';

/** '/_' : the dashboard's base path, without the trailing slash. */
export const BASE = resolve('/').replace(/\/$/, '');
export const LOGIN_PATH = resolve('/login');

export const session = $state({
	/** The server accepted our cookie at least once since the page loaded. */
	authenticated: false,
	/** The first session check finished (whatever its outcome). */
	checked: false
});

let redirecting = false;

function toLogin(_err: UnauthorizedError): void {
	if (typeof window === 'undefined' || redirecting) return;
	const here = window.location.pathname + window.location.search;
	if (window.location.pathname.startsWith(LOGIN_PATH)) return;
	const params = new URLSearchParams();
	if (session.authenticated) params.set('expired', '1');
	params.set('next', here);
	session.authenticated = false;
	redirecting = true;
	void goto(`${LOGIN_PATH}?${params}`, { replaceState: true }).finally(() => {
		redirecting = false;
	});
}

export const api = createClient({ onUnauthorized: toLogin });
