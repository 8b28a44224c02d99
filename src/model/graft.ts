// The grafted model: a body cut from a pretrained base, plus a new head, as one LayersModel.

import type * as tfl from '@tensorflow/tfjs-layers';
import { cutBody, type Body } from './cut.js';
import { attachHead, buildHead, type Head, type HeadOptions } from './head.js';
import type { LayerRef } from './layers.js';

export interface Grafted {
  base: tfl.LayersModel;
  body: Body;
  head: Head;
  /** Original input -> body -> new head. */
  model: tfl.LayersModel;
  /** Features -> new head (same layer objects as in `model`), for training on cached features. */
  headModel: tfl.LayersModel;
}

export interface GraftOptions {
  cut: LayerRef;
  head: HeadOptions;
}

export function graft(base: tfl.LayersModel, options: GraftOptions): Grafted {
  const body = cutBody(base, options.cut);
  const head = buildHead(body.model.outputs[0].shape, options.head);
  const { model, headModel } = attachHead(body, head);
  return { base, body, head, model, headModel };
}
