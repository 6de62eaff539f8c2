// The question asked before removing a server or a tenant, the same on its list and its page.

import type { ConfirmRequest } from './components/confirm-dialog.svelte';
import { toast } from './toasts.svelte';

/** "Remove tenant acme?", then `remove`, a toast saying it is done, and `after` (a refresh, a goto). */
export function removeRequest(
	kind: 'server' | 'tenant',
	name: string,
	message: string,
	remove: () => Promise<unknown>,
	after: () => Promise<unknown>
): ConfirmRequest {
	return {
		title: `Remove ${kind} ${name}?`,
		message,
		confirmLabel: 'Remove',
		danger: true,
		action: async () => {
			await remove();
			toast(`Removed ${kind} ${name}`);
			await after();
		}
	};
}

export const TENANT_REMOVAL = 'Its hostname stops routing. Data in the instance’s directory is left on disk.';
