import { describe, expect, it } from 'vitest';
import { dnsLabelProblem, domainProblem, isDnsLabel, safeNextPath, splitInstanceId } from './validate';

describe('DNS labels', () => {
	it.each(['a', 'alice', 'a1', 'my-app', '0', 'x'.repeat(63), 'a-b-c'])('accepts %s', (v) => {
		expect(isDnsLabel(v)).toBe(true);
		expect(dnsLabelProblem(v)).toBeNull();
	});

	it.each([
		['', 'ID is required'],
		['Alice', 'ID must be lowercase'],
		['a_b', 'ID may contain only a-z, 0-9 and "-"'],
		['a.b', 'ID may contain only a-z, 0-9 and "-"'],
		['-a', 'ID must start and end with a letter or digit'],
		['a-', 'ID must start and end with a letter or digit'],
		['x'.repeat(64), 'ID must be at most 63 characters (it has 64)'],
		['notes:alice', 'ID may contain only a-z, 0-9 and "-"'],
		['é', 'ID may contain only a-z, 0-9 and "-"']
	])('refuses %j with a reason', (v, reason) => {
		expect(isDnsLabel(v)).toBe(false);
		expect(dnsLabelProblem(v)).toBe(reason);
	});

	it('names the field', () => {
		expect(dnsLabelProblem('', 'Tenant ID')).toBe('Tenant ID is required');
	});
});

describe('splitInstanceId', () => {
	it('splits service:name', () => {
		expect(splitInstanceId('notes:alice')).toEqual({ service: 'notes', name: 'alice' });
		expect(splitInstanceId('notes')).toBeNull();
		expect(splitInstanceId(':alice')).toBeNull();
		expect(splitInstanceId('notes:')).toBeNull();
	});
});

describe('safeNextPath', () => {
	it('keeps paths inside the dashboard', () => {
		expect(safeNextPath('/_/instances?state=failed', '/_')).toBe('/_/instances?state=failed');
		expect(safeNextPath('/_', '/_')).toBe('/_');
	});
	it.each([null, '', 'https://evil.example/', '//evil.example/_/', '/api/servers', '/_x', '/_/login?next=/_/', '/\\evil'])(
		'sends %j home',
		(v) => expect(safeNextPath(v, '/_')).toBe('/_/')
	);
});

describe('domain aliases', () => {
	it.each(['shop.example.com', 'Shop.Example.COM', 'a.b', 'xn--bcher-kva.example', 'www.acme.io.'])('accepts %s', (v) => {
		expect(domainProblem(v)).toBeNull();
	});

	it.each([
		['', 'required'],
		['localhost', 'at least two parts'],
		['https://shop.example.com', 'without http://'],
		['shop.example.com/path', 'without http://'],
		['shop.example.com:8080', 'without a port'],
		['shop..example.com', 'no empty part'],
		['-shop.example.com', '"-shop" is not'],
		['shop example.com', '"shop example" is not'],
		[`${'a'.repeat(250)}.com`, 'at most 253']
	])('refuses %s', (v, why) => {
		expect(domainProblem(v)).toContain(why);
	});
});
