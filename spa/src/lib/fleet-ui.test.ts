import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { removeRequest } from './confirm';
import { pollPerPage } from './poll';
import { serverLook, tenantLook, tenantStandingLook } from './status';
import { toasts } from './toasts.svelte';

describe('server and tenant looks', () => {
	it('names every server status in words, an invalid address apart from offline', () => {
		expect(serverLook('online')).toMatchObject({ label: 'Online', tone: 'ok' });
		expect(serverLook('offline')).toMatchObject({ label: 'Offline', tone: 'bad', icon: 'cross' });
		expect(serverLook('invalid')).toMatchObject({ label: 'Invalid address', tone: 'bad' });
		// a status a newer server may send is shown as it is, never as online
		expect(serverLook('draining')).toMatchObject({ label: 'draining', tone: 'warn' });
	});

	it('says a tenant is down when its server is not online, whatever the registry says', () => {
		expect(tenantStandingLook('active', 'online').label).toBe('Active');
		expect(tenantStandingLook('active', null).label).toBe('Active');
		expect(tenantStandingLook('active', 'offline')).toMatchObject({ label: 'Down (server offline)', tone: 'bad' });
		expect(tenantStandingLook('suspended', 'invalid').label).toBe('Down (server invalid address)');
		expect(tenantLook('suspended')).toMatchObject({ label: 'Suspended', tone: 'warn' });
	});
});

describe('removeRequest', () => {
	it('removes, says so, then runs what follows; a refusal leaves the rest undone', async () => {
		const done: string[] = [];
		const ok = removeRequest('tenant', 'acme', 'gone', async () => done.push('remove'), async () => done.push('after'));
		expect(ok).toMatchObject({ title: 'Remove tenant acme?', confirmLabel: 'Remove', danger: true });
		await ok.action();
		expect(done).toEqual(['remove', 'after']);
		expect(toasts.at(-1)?.message).toBe('Removed tenant acme');

		const refused = removeRequest('server', 'far', 'x', () => Promise.reject(new Error('holds tenants')), async () => done.push('after'));
		await expect(refused.action()).rejects.toThrow('holds tenants');
		expect(done).toEqual(['remove', 'after']);
	});
});

describe('pollPerPage', () => {
	beforeEach(() => vi.useFakeTimers());
	afterEach(() => vi.useRealTimers());

	it('starts over for a new page: resets, polls at once, and the last page stops polling', async () => {
		let calls = 0;
		let resets = 0;
		const poller = pollPerPage(async () => void calls++, 1000);
		poller.restart(() => resets++);
		await vi.advanceTimersByTimeAsync(0);
		expect([calls, resets]).toEqual([1, 1]);
		poller.restart(() => resets++);
		await vi.advanceTimersByTimeAsync(0);
		expect([calls, resets]).toEqual([2, 2]);
		await vi.advanceTimersByTimeAsync(1000);
		expect(calls).toBe(3); // one poller, not two
		poller.stop();
		await vi.advanceTimersByTimeAsync(5000);
		expect(calls).toBe(3);
	});
});
