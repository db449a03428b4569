#!/usr/bin/env node
// Thin entry point: the CLI is compiled from src/ into dist/ by `npm run build` (run by `npm ci`).
import '../dist/cli/bin.js';
