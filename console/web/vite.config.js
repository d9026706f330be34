// Builds the risk-expert editors (GoRules JDM editor, bpmn-js modeler) from npm packages into dist/,
// which the service serves under /console/build/ (console/editors.py reads dist/.vite/manifest.json).
// dist/ is not committed: `./dev install` runs `npm ci` and `npm run build`.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/build/",
  publicDir: false,
  esbuild: { jsx: "automatic" },
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    manifest: true,
    target: "es2022",
    chunkSizeWarningLimit: 8000,
    reportCompressedSize: false,
    rollupOptions: {
      input: { policy_editor: "src/policy_editor.jsx", bpmn_modeler: "src/bpmn_modeler.js" },
      // antd marks its modules "use client" (a React server-components hint that means nothing here)
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
    },
  },
});
