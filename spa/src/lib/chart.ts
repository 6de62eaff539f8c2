// Geometry for the small SVG sparklines (the big charts use uPlot).

/** An SVG path through `values`, scaled into width x height with `pad` pixels of margin. */
export function sparklinePath(
	values: readonly number[],
	width: number,
	height: number,
	pad = 1
): string {
	const pts = values.filter((v) => Number.isFinite(v));
	if (pts.length === 0 || width <= 0 || height <= 0) return '';
	const min = Math.min(...pts);
	const max = Math.max(...pts);
	const innerH = Math.max(height - 2 * pad, 0);
	const innerW = Math.max(width - 2 * pad, 0);
	const y = (v: number) =>
		max === min ? pad + innerH / 2 : pad + innerH - ((v - min) / (max - min)) * innerH;
	const round = (n: number) => Math.round(n * 100) / 100;
	if (pts.length === 1) {
		const yy = round(y(pts[0]!));
		return `M${round(pad)},${yy}L${round(pad + innerW)},${yy}`;
	}
	const step = innerW / (pts.length - 1);
	return pts
		.map((v, i) => `${i === 0 ? 'M' : 'L'}${round(pad + i * step)},${round(y(v))}`)
		.join('');
}

/** Append a sample to a rolling series, keeping only the last `max` samples. */
export function pushSample<T>(series: readonly T[], sample: T, max: number): T[] {
	const out = series.length >= max ? series.slice(series.length - max + 1) : series.slice();
	out.push(sample);
	return out;
}

/** Per-second rate from a cumulative counter's [ts_ms, value] points (resets give 0). */
export function counterRate(points: readonly (readonly [number, number])[]): [number, number][] {
	const out: [number, number][] = [];
	for (let i = 1; i < points.length; i++) {
		const [t0, v0] = points[i - 1]!;
		const [t1, v1] = points[i]!;
		const dt = (t1 - t0) / 1000;
		if (dt <= 0) continue;
		out.push([t1, v1 >= v0 ? (v1 - v0) / dt : 0]);
	}
	return out;
}
