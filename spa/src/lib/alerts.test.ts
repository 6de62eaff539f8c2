import { describe, expect, it } from 'vitest';
import { registryDown, titled, type Alert } from './alerts.svelte';

const alert = (event: string, subject = 'x'): Alert => ({
	id: 1,
	ts: 1_700_000_000,
	timestamp: '2023-11-14T22:13:20Z',
	event,
	subject,
	status: 'firing',
	message: `${event} of ${subject}`
});

describe('open alerts', () => {
	it('finds the shared registry out of reach among the open alerts', () => {
		expect(registryDown([])).toBeUndefined();
		expect(registryDown([alert('node_offline', 'n1')])).toBeUndefined();
		expect(registryDown([alert('node_offline', 'n1'), alert('registry_down', 'etcd')])?.subject).toBe('etcd');
	});

	it('counts open alerts in the title', () => {
		expect(titled('Overview · slum', 0)).toBe('Overview · slum');
		expect(titled('Overview · slum', 2)).toBe('(2) Overview · slum');
	});
});
