import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

// The dashboard is a static client of /_/api. The build lands inside the Python
// package so that the wheel and the frozen binary ship it; slum serves it under /_/
// and answers every unknown /_/ path with index.html (the SPA fallback).
const OUT_DIR = '../src/slum/web/static';

/** @type {import('@sveltejs/kit').Config} */
const config = {
	preprocess: vitePreprocess(),
	compilerOptions: {
		runes: true
	},
	kit: {
		adapter: adapter({
			pages: OUT_DIR,
			assets: OUT_DIR,
			fallback: 'index.html',
			// .br and .gz siblings (node's zlib), served by slum with Content-Encoding
			precompress: true,
			strict: true
		}),
		paths: {
			base: '/_',
			// the fallback page is served at any depth, so asset URLs must be absolute
			relative: false
		}
	}
};

export default config;
