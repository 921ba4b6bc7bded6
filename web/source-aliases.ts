import { fileURLToPath } from 'node:url';

// Inside the workspace the demo and the unit tests use the packages' sources, so they need no
// `npm run build:packages` first; consumers get dist/ through each package.json's `exports`.
const at = (p: string) => fileURLToPath(new URL(p, import.meta.url));
export const sourceAliases = [
  { find: /^herald-notify-client$/, replacement: at('./client/src/index.ts') },
  { find: /^herald-notify-react$/, replacement: at('./react/src/index.ts') },
  { find: /^herald-notify-react\/styles\.css$/, replacement: at('./react/src/styles.css') },
];
