package org.fhiradmsc.reference;

public final class Validate {
  public static void main(String[] args) {}
}
