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
