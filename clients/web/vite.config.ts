import { defineConfig, type Plugin } from "vite";

/**
 * Writes the list of built files into the service worker, so it can cache the whole app shell when
 * it installs (the hashed asset names are only known after bundling). vite-plugin-pwa does this
 * too, but brings Workbox's build chain for a worker of a few dozen lines.
 */
function precacheManifest(): Plugin {
  return {
    name: "stockzen-precache-manifest",
    apply: "build",
    generateBundle(_options, bundle) {
      const worker = bundle["sw.js"];
      if (!worker || worker.type !== "chunk") throw new Error("the service worker chunk sw.js is missing");
      const files = Object.keys(bundle).filter((name) => name !== "sw.js");
      const version = files.join("|");
      worker.code = worker.code
        .replace('"__PRECACHE_FILES__"', JSON.stringify(["./", ...files]))
        .replace('"__PRECACHE_VERSION__"', JSON.stringify(version));
    },
  };
}

export default defineConfig({
  base: "/app/",
  plugins: [precacheManifest()],
  build: {
    target: "es2022",
    rollupOptions: {
      input: { main: "index.html", sw: "src/sw.ts" },
      output: { entryFileNames: (chunk) => (chunk.name === "sw" ? "sw.js" : "assets/[name]-[hash].js") },
    },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
