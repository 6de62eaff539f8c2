// A client-only SPA: slum serves index.html for every dashboard path and the
// browser renders from there. Nothing is prerendered; there is no server rendering.
export const ssr = false;
export const prerender = false;
export const trailingSlash = 'ignore';
