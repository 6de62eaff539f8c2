// How each state looks: a label, a tone (colour) and an icon, so the state never
// depends on colour alone.

import type { Health, InstanceState, LogLevel } from './types';

export type Tone = 'ok' | 'warn' | 'bad' | 'busy' | 'idle';
export type IconName =
	| 'check'
	| 'spinner'
	| 'half'
	| 'cross'
	| 'clock'
	| 'square'
	| 'ban'
	| 'dot'
	| 'question'
	| 'alert'
	| 'moon'
	| 'loop';

export interface StateLook {
	label: string;
	tone: Tone;
	icon: IconName;
	/** Running states have a process and an uptime. */
	running: boolean;
	description: string;
}

const STATE_LOOKS: Record<InstanceState, StateLook> = {
	healthy: {
		label: 'Healthy',
		tone: 'ok',
		icon: 'check',
		running: true,
		description: 'Running and passing health checks'
	},
	starting: {
		label: 'Starting',
		tone: 'busy',
		icon: 'spinner',
		running: true,
		description: 'Started, waiting to become healthy'
	},
	degraded: {
		label: 'Degraded',
		tone: 'warn',
		icon: 'half',
		running: true,
		description: 'Running, some health checks fail'
	},
	unhealthy: {
		label: 'Unhealthy',
		tone: 'bad',
		icon: 'alert',
		running: true,
		description: 'Running, health checks fail'
	},
	backoff: {
		label: 'Backoff',
		tone: 'warn',
		icon: 'clock',
		running: false,
		description: 'Exited; waiting before the next restart'
	},
	stopping: {
		label: 'Stopping',
		tone: 'busy',
		icon: 'spinner',
		running: true,
		description: 'Asked to stop, waiting for it to exit'
	},
	stopped: {
		label: 'Stopped',
		tone: 'idle',
		icon: 'square',
		running: false,
		description: 'Stopped by an operator; a request wakes it'
	},
	sleeping: {
		label: 'Sleeping',
		tone: 'idle',
		icon: 'moon',
		running: false,
		description: 'Stopped while idle; a request wakes it'
	},
	'crash-looping': {
		label: 'Crash-looping',
		tone: 'bad',
		icon: 'loop',
		running: false,
		description: 'Exits again and again shortly after each restart'
	},
	failed: {
		label: 'Failed',
		tone: 'bad',
		icon: 'cross',
		running: false,
		description: 'Restarted too often; needs an operator'
	}
};

export function stateLook(state: string): StateLook {
	return (
		STATE_LOOKS[state as InstanceState] ?? {
			label: state || 'Unknown',
			tone: 'idle',
			icon: 'question',
			running: false,
			description: 'Unknown state'
		}
	);
}

export function healthLook(health: Health | string): { label: string; tone: Tone; icon: IconName } {
	switch (health) {
		case 'healthy':
			return { label: 'Passing', tone: 'ok', icon: 'check' };
		case 'unhealthy':
			return { label: 'Failing', tone: 'bad', icon: 'cross' };
		default:
			return { label: 'Unknown', tone: 'idle', icon: 'question' };
	}
}

/** Order for "worst first" sorting and for the state breakdown. */
export const STATE_SEVERITY: Record<InstanceState, number> = {
	failed: 0,
	'crash-looping': 0.5,
	unhealthy: 1,
	backoff: 2,
	degraded: 3,
	starting: 4,
	stopping: 5,
	healthy: 6,
	stopped: 7,
	sleeping: 7.5
};

export function stateSeverity(state: string): number {
	return STATE_SEVERITY[state as InstanceState] ?? 8;
}

export const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export function levelLabel(level: string): string {
	switch (level) {
		case 'warn':
			return 'WARN';
		case 'error':
			return 'ERROR';
		case 'debug':
			return 'DEBUG';
		case 'info':
			return 'INFO';
		default:
			return level.toUpperCase();
	}
}

/** Tailwind classes per tone; kept here so every badge agrees. */
export const TONE_CLASSES: Record<Tone, string> = {
	ok: 'text-emerald-300 bg-emerald-400/10 ring-emerald-400/30',
	warn: 'text-amber-300 bg-amber-400/10 ring-amber-400/30',
	bad: 'text-rose-300 bg-rose-400/10 ring-rose-400/30',
	busy: 'text-sky-300 bg-sky-400/10 ring-sky-400/30',
	idle: 'text-slate-300 bg-slate-400/10 ring-slate-400/25'
};

export const TONE_TEXT: Record<Tone, string> = {
	ok: 'text-emerald-300',
	warn: 'text-amber-300',
	bad: 'text-rose-300',
	busy: 'text-sky-300',
	idle: 'text-slate-400'
};

/** How a plain word-state (a server's, a tenant's) looks in a StatusPill. */
export interface PillLook {
	label: string;
	tone: Tone;
	icon: IconName;
}

const SERVER_LOOKS: Record<string, PillLook> = {
	online: { label: 'Online', tone: 'ok', icon: 'check' },
	offline: { label: 'Offline', tone: 'bad', icon: 'cross' },
	// a stored address that does not parse: never called, so never online
	invalid: { label: 'Invalid address', tone: 'bad', icon: 'alert' }
};

const TENANT_LOOKS: Record<string, PillLook> = {
	active: { label: 'Active', tone: 'ok', icon: 'check' },
	suspended: { label: 'Suspended', tone: 'warn', icon: 'ban' }
};

export function serverLook(status: string): PillLook {
	return SERVER_LOOKS[status] ?? { label: status, tone: 'warn', icon: 'question' };
}

export function tenantLook(status: string): PillLook {
	return TENANT_LOOKS[status] ?? { label: status, tone: 'warn', icon: 'question' };
}

/** A tenant is only as up as its server: on a server that is not online it is down. */
export function tenantStandingLook(status: string, serverStatus: string | null): PillLook {
	if (serverStatus && serverStatus !== 'online') {
		return { label: `Down (server ${serverLook(serverStatus).label.toLowerCase()})`, tone: 'bad', icon: 'cross' };
	}
	return tenantLook(status);
}
