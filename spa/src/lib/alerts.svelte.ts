// The alert engine's recent alerts (GET /_/api/alerts), shared by the bell and the tab title.

import { API_BASE, type Client } from './api';

export interface Alert {
	id: number | string;
	ts: number;
	timestamp: string;
	event: string;
	subject: string;
	status: string;
	message: string;
}

export interface AlertsAnswer {
	alerts: Alert[];
	open: Alert[];
}

export const alerts = $state<{ recent: Alert[]; open: number; loaded: boolean }>({
	recent: [],
	open: 0,
	loaded: false
});

export async function refreshAlerts(client: Client): Promise<void> {
	const answer = await client.request<AlertsAnswer>(`${API_BASE}/alerts?limit=10`);
	alerts.recent = answer?.alerts ?? [];
	alerts.open = answer?.open?.length ?? 0;
	alerts.loaded = true;
}

/** "(2) Overview · slum" while alerts are open. */
export function titled(title: string, open: number): string {
	return open > 0 ? `(${open}) ${title}` : title;
}
