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

export const alerts = $state<{ recent: Alert[]; open: number; openList: Alert[]; loaded: boolean }>({
	recent: [],
	open: 0,
	openList: [],
	loaded: false
});

export async function refreshAlerts(client: Client): Promise<void> {
	const answer = await client.request<AlertsAnswer>(`${API_BASE}/alerts?limit=10`);
	alerts.recent = answer?.alerts ?? [];
	alerts.openList = answer?.open ?? [];
	alerts.open = alerts.openList.length;
	alerts.loaded = true;
}

/** The open alert saying the shared fleet registry (etcd) cannot be reached, if there is one:
 * routing goes on with the last known table and fleet changes are refused until it is back. */
export function registryDown(open: Alert[]): Alert | undefined {
	return open.find((a) => a.event === 'registry_down');
}

/** "(2) Overview · slum" while alerts are open. */
export function titled(title: string, open: number): string {
	return open > 0 ? `(${open}) ${title}` : title;
}
