// The page's one state object: everything the modules share and change lives here.

export const state = {
  client: null,
  backend: '', adapter: '',
  model: null, // what loadModel answered, plus `kind`
  source: null, // how to load the model again: { kind: 'bundled' } | { kind: 'url', url } | { kind: 'file', weights, config }
  images: [], // { id, name, bytes, url, el }
  patches: new Map(), // select value -> { name, png, json } for patches from files and training
  patch: null, // the loaded patch: { key, name, png, json, info, url }
  training: null, // { stop, points, steps }
  generation: 0, // bumped to cancel classification runs whose results are no longer wanted
  modelToken: 0,
  labelsEdited: false,
  note: '',
  busy: new Map(),
  metrics: {},
  nextImageId: 1,
  nextTask: 1,
  classifyTimer: 0, // the scheduled classifyAll, if any
  stage: { dragging: null, commitTimer: 0 }, // the patch being dragged on the stage; the pending position commit
};

// One request to the model worker of the current session (the operations are worker.js's).
export const call = (op, args, transfer) => state.client.call(op, args, transfer);
