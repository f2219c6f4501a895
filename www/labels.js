// Label lists: parsing the textarea and the example sets (the shapes world's 36 classes, a few ImageNet-style sets).

const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'];
const SHAPES = ['circle', 'square', 'triangle', 'star', 'heart', 'cross'];

export const SHAPE_LABELS = COLOURS.flatMap((c) => SHAPES.map((s) => `${c} ${s}`));
export { COLOURS, SHAPES };

export const PRESETS = {
  shapes: { title: 'Shapes world (36)', labels: SHAPE_LABELS },
  animals: {
    title: 'Animals',
    labels: ['cat', 'dog', 'bird', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'tabby cat', 'golden retriever'],
  },
  vehicles: {
    title: 'Vehicles',
    labels: ['car', 'bus', 'truck', 'bicycle', 'motorcycle', 'airplane', 'train', 'boat', 'sports car', 'fire engine'],
  },
  objects: {
    title: 'Everyday objects',
    labels: ['banana', 'coffee mug', 'laptop', 'keyboard', 'cell phone', 'toaster', 'teddy bear', 'umbrella', 'backpack', 'pizza', 'stop sign', 'traffic light'],
  },
};

// "a, b\nc" -> ['a', 'b', 'c']: trimmed, empty entries and repeats dropped.
export function parseLabels(text) {
  return [...new Set(text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean))];
}
