// Lint for the whole repository (ESLint flat config, typescript-eslint). Formatting is Prettier's
// job (`pnpm format:check`); these rules are about correctness and the package boundaries.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', 'dist-tarballs/**', 'coverage/**', 'prof/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        URLSearchParams: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        queueMicrotask: 'readonly',
        performance: 'readonly',
        fetch: 'readonly',
        Response: 'readonly',
        Request: 'readonly',
        Headers: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        crypto: 'readonly',
        structuredClone: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Adapters are thin: they use core only through its public entry, never its files.
    files: ['packages/{express,fastify,koa,node,redis}/src/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@callsign/core/*'], message: 'Import from @callsign/core (the public entry) only.' },
            { group: ['**/core/src/**', '**/core/dist/**', '../../core/**'], message: 'Adapters import @callsign/core, not its files.' },
          ],
        },
      ],
    },
  },
  {
    // Tests and tooling may poke at internals and use loose types at boundaries.
    files: ['**/test/**/*.ts', 'test/**/*.ts', 'bench/**', 'scripts/**', 'examples/**'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
)
