import { sveltekit } from '@sveltejs/kit/vite';
import tailwindcss from '@tailwindcss/vite';
import { defineConfig } from 'vitest/config';

// `npm run dev` talks to a running `slum serve`; point it elsewhere with SLUM_DEV_BACKEND.
const backend = process.env.SLUM_DEV_BACKEND ?? 'http://127.0.0.1:8080';

export default defineConfig({
	plugins: [tailwindcss(), sveltekit()],
	server: {
		proxy: {
			'/_/api': { target: backend, changeOrigin: false },
			'/api': { target: backend, changeOrigin: false }
		}
	},
	build: {
		// uPlot is the largest piece; keep the warning meaningful for our own code
		chunkSizeWarningLimit: 200
	},
	test: {
		include: ['src/**/*.test.ts'],
		environment: 'node'
	}
});
