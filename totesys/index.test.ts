import * as totesys from './index';

describe('totesys public surface', () => {
  it('exports exactly the functions and constants other modules use', () => {
    expect(Object.keys(totesys).sort()).toEqual([
      'CHANGE_KINDS',
      'PAYMENT_TYPE_NAMES',
      'SourceNotEmptyError',
      'SourceNotSeededError',
      'TOTESYS_COLUMNS',
      'TRANSACTION_TYPES',
      'TotesysError',
      'createTotesysSchema',
      'dropTotesysSchema',
      'generateTotesys',
      'inspectTotesys',
      'installTotesys',
      'runSimulation',
      'seedTotesys',
      'totesysDdl',
      'totesysRowCounts',
    ]);
    expect(new totesys.SourceNotEmptyError('x', [])).toBeInstanceOf(totesys.TotesysError);
    expect(new totesys.SourceNotSeededError('x')).toBeInstanceOf(totesys.TotesysError);
  });
});
