#!/usr/bin/env node
// Thin entry point: the CLI is bundled from src/ into dist/cli/ by `npm run build` (run by `npm ci`).
import '../dist/cli/bin.js';
