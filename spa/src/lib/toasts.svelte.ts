// Short confirmations and errors after an action, announced politely to screen readers.

export type ToastTone = 'ok' | 'error' | 'info';

export interface Toast {
	id: number;
	message: string;
	tone: ToastTone;
}

export const toasts = $state<Toast[]>([]);

let nextId = 1;

export function dismissToast(id: number): void {
	const i = toasts.findIndex((t) => t.id === id);
	if (i >= 0) toasts.splice(i, 1);
}

export function toast(message: string, tone: ToastTone = 'ok', ms = tone === 'error' ? 7000 : 3500) {
	const id = nextId++;
	toasts.push({ id, message, tone });
	if (toasts.length > 4) toasts.splice(0, toasts.length - 4);
	setTimeout(() => dismissToast(id), ms);
	return id;
}
