// Names that become hostnames: service names, instance ids and tenant ids are DNS labels.

export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function isDnsLabel(value: string): boolean {
	return DNS_LABEL.test(value);
}

/** A human explanation of why `value` is not a DNS label, or null when it is one. */
export function dnsLabelProblem(value: string, what = 'ID'): string | null {
	if (value === '') return `${what} is required`;
	if (value.length > 63) return `${what} must be at most 63 characters (it has ${value.length})`;
	if (/[A-Z]/.test(value)) return `${what} must be lowercase`;
	if (/[^a-z0-9-]/.test(value)) {
		return `${what} may contain only a-z, 0-9 and "-"`;
	}
	if (value.startsWith('-') || value.endsWith('-')) {
		return `${what} must start and end with a letter or digit`;
	}
	return isDnsLabel(value) ? null : `${what} is not a valid DNS label`;
}

/** "notes:alice" -> {service: "notes", name: "alice"}; null when not of that form. */
export function splitInstanceId(id: string): { service: string; name: string } | null {
	const i = id.indexOf(':');
	if (i <= 0 || i === id.length - 1) return null;
	return { service: id.slice(0, i), name: id.slice(i + 1) };
}

/**
 * Where to go after logging in: only a path inside the dashboard, never another origin
 * ("//evil.example" or "https://...") and never the login page itself.
 */
export function safeNextPath(next: string | null | undefined, base: string): string {
	const home = `${base}/`;
	if (!next) return home;
	if (!next.startsWith('/') || next.startsWith('//') || next.includes('\\')) return home;
	if (next !== base && !next.startsWith(`${base}/`)) return home;
	if (next.startsWith(`${base}/login`)) return home;
	return next;
}

/**
 * Why `value` cannot be a domain alias (a hostname of at least two labels, such as
 * shop.example.com), or null when it can. Case and a trailing dot are the server's to fold.
 */
export function domainProblem(value: string): string | null {
	const d = value.trim().toLowerCase().replace(/\.$/, '');
	if (d === '') return 'A domain is required';
	if (d.length > 253) return `A domain has at most 253 characters (this one has ${d.length})`;
	if (/^[a-z][a-z0-9+.-]*:\/\//.test(d) || d.includes('/')) return 'Only the host name, without http:// or a path';
	if (d.includes(':')) return 'Only the host name, without a port';
	const labels = d.split('.');
	if (labels.length < 2) return 'A domain has at least two parts, such as shop.example.com';
	const bad = labels.find((l) => !isDnsLabel(l));
	if (bad !== undefined) return bad === '' ? 'A domain has no empty part (..)' : `"${bad}" is not a valid part of a domain`;
	return null;
}
