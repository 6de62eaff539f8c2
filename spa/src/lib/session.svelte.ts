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

/** Whether slum answers: every page shows the same banner and dims its numbers while not. */
export const connection = $state({
	reachable: true,
	/** ms since the epoch of the last answer (what the dimmed numbers date from). */
	lastOk: 0,
	/** ms since the epoch when it became unreachable. */
	downSince: 0
});

function reachable(ok: boolean): void {
	if (ok) {
		connection.lastOk = Date.now();
		connection.reachable = true;
	} else if (connection.reachable) {
		connection.reachable = false;
		connection.downSince = Date.now();
	}
}

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

export const api = createClient({ onUnauthorized: toLogin, onReachable: reachable });
