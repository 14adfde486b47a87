// `npm run test:stress`: the free-mode reachability tests (a buggy variant's race found on real
// threads within a budget of seeds and seconds). How soon a race shows depends on the host's CPU
// and load, so these are opt-in and not part of `npm test`. Same TypeScript set-up as package.json.
export default {
  typescript: {
    rewritePaths: { 'src/': 'dist/src/', 'test/': 'dist/test/', 'examples/': 'dist/examples/' },
    compile: false,
  },
  files: ['test/stress/**/*.test.ts'],
  timeout: '600s',
  workerThreads: false,
  concurrency: 1,
};
